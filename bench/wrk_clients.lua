-- wrk's script for seqcast's endpoints (bench/wrk.py writes the files it reads and parses what it prints).
-- Arguments after `--`: endpoint (forecast | observe | noop), items per request (1: a bare body; more: a list
-- of that many, the gateway pattern), a file of bodies, one per line, and for observe and noop a file of open
-- sessions ("id seq" per line): as many per connection as items, and as many again for wrk's check of the
-- script (it calls request() once before any connection).
--
-- A forecast sends the bodies in turn. An observe must carry its session's current seq, and wrk does not say
-- which connection a response came on: free sessions wait in a pool, a request takes one, and its response
-- returns it with the seq the service answered. Each connection has one request in flight, so the pool never
-- runs dry while every answer is a 200; a refused observe loses its session, and the rows say so in errors.

local endpoint
local items
local bodies = {}
local free = {}
local turn = 0
refused_items = 0 -- global: done() runs in wrk's main Lua state and reads it from the thread's
local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
end

function init(args)
   endpoint = args[1]
   items = tonumber(args[2])
   for line in io.lines(args[3]) do
      bodies[#bodies + 1] = line
   end
   if args[4] then
      for line in io.lines(args[4]) do
         local id, seq = line:match("^(%S+) (%d+)$")
         free[#free + 1] = {id = id, seq = tonumber(seq)}
      end
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

local function item()
   if endpoint == "forecast" then
      turn = turn % #bodies + 1
      return bodies[turn]
   end
   -- An empty pool (after refusals) still sends, to a session that cannot match, so the refusal is counted.
   local session = table.remove(free) or {id = "lost", seq = 0}
   -- Observation bodies are the fields after session_id and seq, cycled by the session's position.
   local rest = bodies[session.seq % #bodies + 1]
   return string.format('{"session_id":"%s","seq":%d,%s', session.id, session.seq, rest)
end

function request()
   local body = item()
   if items > 1 then
      local parts = {body}
      for _ = 2, items do
         parts[#parts + 1] = item()
      end
      body = "[" .. table.concat(parts, ",") .. "]"
   end
   return wrk.format(nil, "/" .. endpoint, nil, body)
end

function response(status, headers, body)
   if status ~= 200 then
      return
   end
   -- A list is answered 200 item by item; a refused item carries its own status and, for sessions, is lost.
   for _ in body:gmatch('"status": %d+') do
      refused_items = refused_items + 1
   end
   if endpoint ~= "forecast" then
      for id, seq in body:gmatch('"session_id":"([^"]+)","seq":(%d+)') do
         free[#free + 1] = {id = id, seq = tonumber(seq)}
      end
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   local refused = 0
   for _, thread in ipairs(threads) do
      refused = refused + thread:get("refused_items")
   end
   io.write(string.format(
      'WRK {"requests":%d,"refused_items":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
         .. '"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
      summary.requests, refused, summary.duration, errors.connect, errors.read, errors.write, errors.status,
      errors.timeout,
      latency:percentile(50), latency:percentile(95), latency:percentile(99)
   ))
end
