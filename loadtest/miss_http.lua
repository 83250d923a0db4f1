-- wrk script for the HTTP miss path (loadtest/miss_http.py): every request names a roll
-- never asked before, rolls scattered over the table as udpload.c's "perm" does:
-- request i asks for roll (i mod rolls) * SCATTER mod rolls, i counting from START.
--   wrk -t1 -c64 -d10s -s loadtest/miss_http.lua URL -- ROLLS START
-- One thread (-t1): one Lua state, so one counter for every connection. done() prints
-- where the counter stopped (requests still in flight at the end included), so that a
-- following run starting there repeats no roll.
local SCATTER = 2654435761 -- prime, larger than any key space (udpload.c)
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  rolls = tonumber(args[1]) -- globals: done() reads them through thread:get
  i = tonumber(args[2] or "0")
end

function request()
  -- (i mod rolls) * SCATTER stays below 2^53: exact in Lua's doubles.
  local key = ((i % rolls) * SCATTER) % rolls
  i = i + 1
  return wrk.format("GET", string.format("/api/handles/88.118.2/ROLL-2026-%07d", key))
end

function done(summary, latency, requests)
  local next = 0
  for _, thread in ipairs(threads) do
    next = thread:get("i")
  end
  io.write(string.format("miss_http requests=%d next=%d\n", summary.requests, next))
end
