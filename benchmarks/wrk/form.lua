-- POST the forms of $WRK_LINES round robin (device authorization, polling, client credentials):
-- the requests vary over many clients and device codes. See common.lua.
dofile(os.getenv("WRK_DIR") .. "/common.lua")

local prepared, next_one

function init(args)
  prepared = load_requests("POST")
  next_one = 0
end

function request()
  next_one = next_one % #prepared + 1
  return prepared[next_one]
end
