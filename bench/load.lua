-- wrk script for the portal's busiest reads. Two ways to run it:
--   wrk ... -s bench/load.lua URL                        the one request wrk's URL and -H give
--   wrk ... -s bench/load.lua URL -- CLIENTS [KINDS [PAUSE_MS]]   each request takes the next
--     researcher of CLIENTS (lines "session-key api-token id,id,...") and the next of KINDS (default
--     all four: list,detail,api-list,api-detail); pages carry the session cookie, API calls the
--     token. With PAUSE_MS, each connection waits that long (give or take a half, at random) before
--     its next request, like a person or a polling script; without, it sends the next at once.
-- wrk reports 50/75/90/99 %; the portal's figure is the 95th percentile. Anything but a 200 counts
-- as an error: an expired session answers with a quick redirect to the login page.

local PATHS = {
  ["list"] = function(id) return "/submissions/" end,
  ["detail"] = function(id) return "/submissions/" .. id .. "/" end,
  ["api-list"] = function(id) return "/api/v1/submissions/" end,
  ["api-detail"] = function(id) return "/api/v1/submissions/" .. id .. "/" end,
}

local threads = {}
local clients, kinds = {}, {}
local n, bad, pause = 0, 0, 0

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  if not args[1] then return end
  for line in io.lines(args[1]) do
    local cookie, token, ids = line:match("^(%S+)%s+(%S+)%s+(%S+)")
    if cookie then
      local list = {}
      for id in ids:gmatch("%d+") do table.insert(list, id) end
      table.insert(clients, { cookie = cookie, token = token, ids = list })
    end
  end
  for kind in (args[2] or "list,detail,api-list,api-detail"):gmatch("[^,]+") do
    assert(PATHS[kind], "unknown kind " .. kind)
    table.insert(kinds, kind)
  end
  pause = tonumber(args[3] or "0")
  -- threads start at different researchers, so they do not send the same requests in step
  n = offset * 7919
  math.randomseed(offset + 1)
end

function delay()
  if pause <= 0 then return 0 end
  return math.floor(pause * (0.5 + math.random()))
end

function request()
  if #clients == 0 then return wrk.request() end
  -- all kinds for one researcher, then the next researcher; its next submission on the next pass
  local kind = kinds[n % #kinds + 1]
  local turn = math.floor(n / #kinds)
  local client = clients[turn % #clients + 1]
  local id = client.ids[math.floor(turn / #clients) % #client.ids + 1]
  n = n + 1
  local headers = {}
  if kind:sub(1, 4) == "api-" then
    headers["Authorization"] = "Token " .. client.token
  else
    headers["Cookie"] = "sessionid=" .. client.cookie
  end
  return wrk.format("GET", PATHS[kind](id), headers)
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  for _, thread in ipairs(threads) do errors = errors + (thread:get("bad") or 0) end
  io.write(string.format("LOAD requests=%d errors=%d rps=%.1f p50_ms=%.1f p95_ms=%.1f p99_ms=%.1f\n",
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
