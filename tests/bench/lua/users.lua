-- The original's workload: each connection is a user who thinks ~BENCH_THINK_MS between
-- actions (exponential), then sends (BENCH_SEND_SHARE, default 10%) or reads a page of 20,
-- as a random member of the chat with that member's access token.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local share = tonumber(os.getenv("BENCH_SEND_SHARE") or "0.1")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "20")
setup = c.setup
init = function() c.init() end
delay = c.think
request = function()
  if math.random() < share then
    return c.send_request()
  end
  return c.page_request(limit)
end
response = c.response
done = c.done
