-- POST each form of $WRK_LINES once (refresh: a rotated refresh token sent again would be a
-- reuse, which revokes its login). When all are sent the thread stops: wrk then reports the
-- requests answered over the time they took (its duration is measured, not the one asked).
dofile(os.getenv("WRK_DIR") .. "/common.lua")

local prepared, next_one

function init(args)
  prepared = load_requests("POST")
  next_one = 0
end

function request()
  next_one = next_one + 1
  if next_one > #prepared then
    -- Nothing is left to send: stop before this answer is read (what is returned here is never
    -- counted).
    wrk.thread:stop()
    return prepared[#prepared]
  end
  return prepared[next_one]
end
