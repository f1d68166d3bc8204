// V8 heap settings for the long-running server process. A smaller young generation and an
// old-space ceiling make V8 collect early instead of letting the heap balloon under load, keeping
// the box's memory flat (about half the peak RSS) with no measurable cost in throughput; the
// ceiling leaves several times the live heap a busy host needs. `npm start`, the installed
// wrapper (scripts/install.sh) and the benchmark start `node` with exactly these.
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-old-space-size=96'];

// The environment the same three give the server. glibc's malloc gives each thread that allocates
// an arena of its own (up to eight per core), and the server's threads (V8's helpers, libuv's
// pool) each keep a partly used one: two arenas shared by all of them cut the
// peak RSS under load by about 2 MB with no measurable cost in CPU per request (README "Memory").
// glibc reads it when the process starts, so it cannot be set from inside.
export const SERVER_ENV: Readonly<Record<string, string>> = Object.freeze({ MALLOC_ARENA_MAX: '2' });
