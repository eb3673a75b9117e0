-- wrk script (issue 11): token requests authenticated by one-use assertions, one line of the
-- file in $BODIES per request (a jti is accepted once). Run with one wrk thread.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #bodies then i = 1 end -- exhausted: replays are refused and show as non-2xx
  return wrk.format("POST", "/oauth2/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, bodies[i])
end
