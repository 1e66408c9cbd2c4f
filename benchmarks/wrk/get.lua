-- GET the URL given to wrk (discovery): every answer counted (common.lua).
dofile(os.getenv("WRK_DIR") .. "/common.lua")
