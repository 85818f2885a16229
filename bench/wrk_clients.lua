-- wrk's script for seqcast's endpoints (bench/wrk.py writes the files it reads and parses what it prints).
-- Arguments after `--`: endpoint (forecast | observe | noop), a file of bodies, one per line, and for observe
-- and noop a file of open sessions ("id seq" per line): one per connection, and one more that wrk's check of
-- the script takes (it calls request() once before any connection).
--
-- A forecast sends the bodies in turn. An observe must carry its session's current seq, and wrk does not say
-- which connection a response came on: free sessions wait in a pool, a request takes one, and its response
-- returns it with the seq the service answered. Each connection has one request in flight, so the pool never
-- runs dry while every answer is a 200; a refused observe loses its session, and the rows say so in errors.

local endpoint
local bodies = {}
local free = {}
local turn = 0

function init(args)
   endpoint = args[1]
   for line in io.lines(args[2]) do
      bodies[#bodies + 1] = line
   end
   if args[3] then
      for line in io.lines(args[3]) do
         local id, seq = line:match("^(%S+) (%d+)$")
         free[#free + 1] = {id = id, seq = tonumber(seq)}
      end
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   if endpoint == "forecast" then
      turn = turn % #bodies + 1
      return wrk.format(nil, "/forecast", nil, bodies[turn])
   end
   -- An empty pool (after refusals) still sends, to a session that cannot match, so the refusal is counted.
   local session = table.remove(free) or {id = "lost", seq = 0}
   -- Observation bodies are the fields after session_id and seq, cycled by the session's position.
   local rest = bodies[session.seq % #bodies + 1]
   local body = string.format('{"session_id":"%s","seq":%d,%s', session.id, session.seq, rest)
   return wrk.format(nil, "/" .. endpoint, nil, body)
end

function response(status, headers, body)
   if endpoint ~= "forecast" and status == 200 then
      local id = body:match('"session_id":"([^"]+)"')
      local seq = body:match('"seq":(%d+)')
      free[#free + 1] = {id = id, seq = tonumber(seq)}
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
         .. '"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(95), latency:percentile(99)
   ))
end
