-- Saturating sends: POST /chats/{id}/messages from a random member (with that member's access
-- token: the sender is the caller), with a unique client_msg_id.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local c = require("common")
setup = c.setup
init = function() c.init() end
request = c.send_request
response = c.response
done = c.done
