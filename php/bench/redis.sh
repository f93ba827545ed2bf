# Sourced by the php/bench scripts: starts redis-server for the phpredis row.
#
# start_redis DIR: redis-server on the unix socket DIR/redis.sock (it cannot
# listen on TCP port 0, a free port), no persistence; returns once it accepts
# connections. Sets REDIS_SOCK (exported) and REDIS_PID; its log is DIR/redis.log.
start_redis() {
  local dir=$1 line
  export REDIS_SOCK=$dir/redis.sock
  mkfifo "$dir/redis.out"
  redis-server --port 0 --unixsocket "$REDIS_SOCK" --save '' --appendonly no --daemonize no \
    >"$dir/redis.out" 2>&1 &
  REDIS_PID=$!
  exec {REDIS_OUT}<"$dir/redis.out"
  # It logs "...ready to accept connections..." once the socket is listening.
  while IFS= read -r line <&"$REDIS_OUT"; do
    echo "$line" >>"$dir/redis.log"
    [[ ${line,,} == *"ready to accept connections"* ]] && break
  done
  [[ -S $REDIS_SOCK ]] || { cat "$dir/redis.log" >&2; return 1; }
  cat <&"$REDIS_OUT" >>"$dir/redis.log" &   # keep draining its output
  exec {REDIS_OUT}<&-
}
