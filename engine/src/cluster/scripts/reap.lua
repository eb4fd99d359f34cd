-- reap(K; per_host, max)
-- Returns up to `max` expired leases' requests to the front of their host's queue (their
-- engine died or lost touch); returns how many.
local per_host = tonumber(ARGV[1])
local expired = take_due(K .. ':leases', tonumber(ARGV[2]))
for _, lease in ipairs(expired) do
  if not lease[3] then free_slot(lease[1], lease[4]) end
  give_back_page(lease[5])
  if lease[6] then
    -- Its page is fetched again: counted then.
    redis.call('HINCRBY', K .. ':host:' .. lease[1], 'pages', -1)
  end
  requeue_front(lease[1], lease[2], per_host)
end
return #expired
