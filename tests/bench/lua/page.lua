-- Saturating pages: GET /chats/{id}/messages?limit=BENCH_LIMIT (default 50), newest or older,
-- each read by a random member of the chat (with that member's access token).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local limit = tonumber(os.getenv("BENCH_LIMIT") or "50")
setup = c.setup
init = function() c.init() end
request = function() return c.page_request(limit) end
response = c.response
done = c.done
