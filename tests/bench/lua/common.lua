-- Shared by the wrk scripts: the seeded data set's shape, the users' access tokens, and a
-- `done` that writes the result.
-- Membership follows tests/bench/seed.py: member k (1..MEMBERS) of chat c is user
-- ((c - 1) * MEMBERS + k - 1) % USERS + 1.
-- Every request carries the access token of the user it acts as (BENCH_TOKENS_FILE: line n is
-- user n's token, minted before the run by tests/bench/auth.py as a client caches its own).
local M = {}

M.users = tonumber(os.getenv("BENCH_USERS") or "1000")
M.chats = tonumber(os.getenv("BENCH_CHATS") or "100")
M.members = tonumber(os.getenv("BENCH_MEMBERS") or "10")
M.max_message_id = tonumber(os.getenv("BENCH_MESSAGES") or "100000")
M.nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
M.prefix = os.getenv("BENCH_PREFIX") or "" -- of sends only: the baseline's /t sends
M.token = os.getenv("BENCH_TOKEN") -- an X-Consistency-Token every page read carries
M.tokens_file = os.getenv("BENCH_TOKENS_FILE")
M.think_ms = tonumber(os.getenv("BENCH_THINK_MS") or "1000")

local threads = {}

function M.setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_no", #threads)
end

-- Counts answers other than 2xx by status, and keeps the first such body (per thread).
codes = {}
function M.response(status, headers, body)
  if status >= 300 then
    codes[status] = (codes[status] or 0) + 1
    if not error_sample then error_sample = body end
  end
end

-- Named counts a script keeps (per thread; `done` adds them up).
counts = {}
function M.count(name)
  counts[name] = (counts[name] or 0) + 1
end

local function json_string(text)
  text = string.sub(text or "", 1, 300)
  return '"' .. text:gsub('[%c"\\]', function(ch)
    if ch == '"' or ch == "\\" then return "\\" .. ch end
    return " "
  end) .. '"'
end

-- The users' headers, built once per thread: M.bearer[user], M.send_headers[user] (JSON and
-- the token) and M.read_headers[user] (the token, and BENCH_TOKEN when set).
function M.init()
  local seed = tonumber(os.getenv("BENCH_SEED") or tostring(os.time()))
  math.randomseed(seed + 7919 * (thread_no or 0))
  M.counter = 0
  M.bearer, M.send_headers, M.read_headers = {}, {}, {}
  local consistency = M.token ~= nil and M.token ~= ""
  local user = 0
  assert(M.tokens_file, "BENCH_TOKENS_FILE is not set")
  for line in io.lines(M.tokens_file) do
    user = user + 1
    local bearer = "Bearer " .. line
    M.bearer[user] = bearer
    M.send_headers[user] = { ["Content-Type"] = "application/json", ["Authorization"] = bearer }
    M.read_headers[user] = { ["Authorization"] = bearer }
    if consistency then
      M.read_headers[user]["X-Consistency-Token"] = M.token
    end
  end
  assert(user >= M.users, "BENCH_TOKENS_FILE holds fewer tokens than BENCH_USERS")
end

function M.member(chat)
  local k = math.random(1, M.members)
  return ((chat - 1) * M.members + k - 1) % M.users + 1
end

-- A send to `chat` from `sender` (a random chat and member when not given), unique key.
function M.send_request(chat, sender)
  M.counter = M.counter + 1
  chat = chat or math.random(1, M.chats)
  sender = sender or M.member(chat)
  local body = string.format(
    '{"body":"bench message %d of thread %d","client_msg_id":"%s-%d-%d"}',
    M.counter, thread_no or 0, M.nonce, thread_no or 0, M.counter
  )
  return wrk.format(
    "POST", M.prefix .. "/chats/" .. chat .. "/messages", M.send_headers[sender], body
  )
end

-- A page of a random chat read by a random member: half the newest, half from a random
-- older message.
function M.page_request(limit)
  local chat = math.random(1, M.chats)
  local path = "/chats/" .. chat .. "/messages?limit=" .. limit
  if math.random() < 0.5 then
    path = path .. "&before=" .. math.random(1, M.max_message_id)
  end
  return wrk.format("GET", path, M.read_headers[M.member(chat)])
end

-- Exponential think time with the given mean (a Poisson arrival per user), capped at 5x.
function M.think()
  local u = math.random()
  if u < 1e-9 then u = 1e-9 end
  return math.min(math.floor(-M.think_ms * math.log(u)), 5 * M.think_ms)
end

-- Quantiles at which the latency distribution is written: dense enough to merge runs.
local function quantiles()
  local qs = {}
  for i = 1, 198 do qs[#qs + 1] = i * 0.5 end
  for i = 1, 9 do qs[#qs + 1] = 99 + i * 0.1 end
  for i = 1, 9 do qs[#qs + 1] = 99.9 + i * 0.01 end
  return qs
end

-- Summary, mean, max and the latency quantiles (percent: microseconds) as JSON in BENCH_OUT.
function M.done(summary, latency, requests)
  local parts = {}
  for _, q in ipairs(quantiles()) do
    parts[#parts + 1] = string.format('"%.2f":%d', q, latency:percentile(q))
  end
  parts[#parts + 1] = string.format('"100.00":%d', latency.max)
  local statuses, totals, sample = {}, {}, nil
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes") or {}) do
      statuses[status] = (statuses[status] or 0) + n
    end
    for name, n in pairs(thread:get("counts") or {}) do
      totals[name] = (totals[name] or 0) + n
    end
    sample = sample or thread:get("error_sample")
  end
  local status_parts, count_parts = {}, {}
  for status, n in pairs(statuses) do
    status_parts[#status_parts + 1] = string.format('"%d":%d', status, n)
  end
  for name, n in pairs(totals) do
    count_parts[#count_parts + 1] = string.format('"%s":%d', name, n)
  end
  local e = summary.errors
  local text = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"statuses":{%s},"counts":{%s},"error_sample":%s,'
      .. '"latency_mean_us":%.1f,"latency_min_us":%d,"quantiles_us":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(status_parts, ","), table.concat(count_parts, ","), json_string(sample),
    latency.mean, latency.min, table.concat(parts, ",")
  )
  local path = os.getenv("BENCH_OUT")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  else
    io.write(text)
  end
end

return M
