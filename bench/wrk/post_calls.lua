-- wrk script: POST /v1/masking/calls, each request with a new pair of ordinary mobile
-- numbers, counting the responses by status (bench/loadgen.py runs it and reads its output).
--
--   WRK_TARGETS="127.0.0.1:8001 127.0.0.1:8002" \
--     wrk -t2 -c32 -d15s --latency -s bench/wrk/post_calls.lua http://127.0.0.1:8001 -- KEY BLOCK
--
-- KEY: the API key sent as "Authorization: Bearer KEY".
-- BLOCK: the first block of numbers; thread i (from 0) uses block BLOCK + i, so runs given
--   blocks that do not overlap (BLOCK steps of the thread count) never repeat a party.
-- WRK_TARGETS (optional): host:port addresses; thread i sends to the (i mod n)-th, so one
--   wrk process spreads its threads over several API processes. The URL's host still
--   goes in the Host header.

local FIRST_NUMBER = 7000000000 -- a 10-digit Indian mobile number
local BLOCK_SIZE = 10000000 -- numbers a thread may use: 5 million requests
local LAST_BLOCK = 299 -- 7000000000 + 300 blocks stays a 10-digit mobile number

local threads = {}

function setup(thread)
   local index = #threads
   thread:set("index", index)
   local targets = {}
   for target in (os.getenv("WRK_TARGETS") or ""):gmatch("%S+") do
      targets[#targets + 1] = target
   end
   if #targets > 0 then
      local host, port = targets[index % #targets + 1]:match("^(.+):(%d+)$")
      thread.addr = wrk.lookup(host, port)[1]
   end
   table.insert(threads, thread)
end

local headers, next_number, end_number

function init(args)
   local block = tonumber(args[2] or "0") + index
   if block > LAST_BLOCK then
      error("no block of numbers " .. block .. ": the last is " .. LAST_BLOCK)
   end
   headers = {
      ["Authorization"] = "Bearer " .. (args[1] or ""),
      ["Content-Type"] = "application/json",
   }
   next_number = FIRST_NUMBER + block * BLOCK_SIZE
   end_number = next_number + BLOCK_SIZE
   statuses = {}
end

-- The sim network treats numbers ending 0000-0003 specially (SPEC §8): skip them, as
-- bench/calls.py parties() does.
local function party()
   local n = next_number
   if n % 10000 <= 3 then
      n = n - n % 10000 + 4
   end
   if n >= end_number then
      error("this thread used up its block of numbers")
   end
   next_number = n + 1
   return string.format("%.0f", n)
end

function request()
   local body = string.format(
      '{"party_a":"%s","party_b":"%s","record":false}', party(), party()
   )
   return wrk.format("POST", "/v1/masking/calls", headers, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

-- One line bench/loadgen.py reads: the responses of all threads by status, as JSON.
function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(counts) do
      parts[#parts + 1] = string.format('"%d": %d', status, count)
   end
   io.write("statuses: {" .. table.concat(parts, ", ") .. "}\n")
end
