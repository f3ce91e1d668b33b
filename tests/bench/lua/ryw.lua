-- Read-your-writes, as docs/architecture.md tells clients to do it: a send, then a page of the
-- same chat read by the same user carrying the X-Consistency-Token that send returned.
--
-- wrk's response() does not say which request it answers, so the answer says it: a 201 is a
-- send (its body names the message, chat and sender; its header the token), which queues
-- that user's read of that chat; the next request of this thread makes the read, and a
-- request with nothing queued is a new send from a random member of a random chat. Every
-- send is followed by one read: half the requests are sends, half reads, whatever the
-- connections per thread.
--
-- BENCH_RYW_TOKEN=0: the same mix without the token (reads go wherever the server sends
-- tokenless reads). Either way each read's page (the newest BENCH_LIMIT, default 20) is
-- checked for its write: `reads_saw_write`, or `reads_missed_write` when the page's newest
-- message is older than the write (a stale read).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "20")
local carry = (os.getenv("BENCH_RYW_TOKEN") or "1") ~= "0"

local queued, first, last = {}, 1, 0 -- answered sends whose read is still to be made
local in_flight = {} -- chat -> ids of the writes whose reads are under way

setup = c.setup
init = function() c.init() end

request = function()
  if first > last then
    return c.send_request()
  end
  local sent = queued[first]
  queued[first] = nil
  first = first + 1
  local ids = in_flight[sent.chat]
  if ids == nil then
    ids = {}
    in_flight[sent.chat] = ids
  end
  ids[#ids + 1] = sent.id
  local headers = { ["Authorization"] = c.bearer[sent.sender] }
  if carry and sent.token then
    headers["X-Consistency-Token"] = sent.token
  end
  return wrk.format("GET", "/chats/" .. sent.chat .. "/messages?limit=" .. limit, headers)
end

-- Which write a page answers: the latest in-flight write of its chat that the page shows
-- (its newest id is at least the write's), else the oldest one, which the page missed.
local function check_read(chat, newest)
  local ids = in_flight[chat]
  if ids == nil or #ids == 0 then
    return
  end
  local seen, oldest = nil, 1
  for i, id in ipairs(ids) do
    if id <= newest and (seen == nil or id > ids[seen]) then
      seen = i
    end
    if id < ids[oldest] then
      oldest = i
    end
  end
  if seen ~= nil then
    table.remove(ids, seen)
    c.count("reads_saw_write")
  else
    table.remove(ids, oldest)
    c.count("reads_missed_write")
  end
end

response = function(status, headers, body)
  c.response(status, headers, body)
  if status == 201 then
    local token = headers["x-consistency-token"] or headers["X-Consistency-Token"]
    if token == nil then
      c.count("sends_without_token")
    end
    last = last + 1
    queued[last] = {
      id = tonumber(string.match(body, '"id":(%d+)')),
      chat = tonumber(string.match(body, '"chat_id":(%d+)')),
      sender = tonumber(string.match(body, '"sender_id":(%d+)')),
      token = token,
    }
  elseif status == 200 and string.sub(body, 1, 9) == '{"items":' then
    local newest = tonumber(string.match(body, '"id":(%d+)') or "0")
    local chat = tonumber(string.match(body, '"chat_id":(%d+)') or "0")
    check_read(chat, newest)
  end
end

done = c.done
