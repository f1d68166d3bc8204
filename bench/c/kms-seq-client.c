/*
 * A sequential KMS load client for `npm run bench` (issue 14's measurement): one request in flight,
 * written in C so that the client's own cost does not hide the server's on a 2-core machine.
 * It knows nothing of KMS: it replays PDUs that bench/c-client.ts encoded with the project's
 * codecs (a bind, then activation requests whose call_id it patches) and reads whole PDUs back.
 *
 * usage: kms-seq-client HOST PORT SECONDS MODE PDUFILE
 *   MODE keepalive: one connection, bind once, then request after request
 *   MODE newconn:   connect, bind, one request, close; again
 * prints one line: requests errors elapsed_us p50_us p99_us
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PDU 8192
#define MAX_SAMPLES 4000000
#define PTYPE_RESPONSE 2
#define PTYPE_BIND_ACK 12

typedef struct {
  uint8_t *bytes;
  uint32_t length;
} pdu_t;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Reads one PDU (frag_length at offset 8, little-endian) and returns its ptype, or -1. */
static int read_pdu(int fd) {
  uint8_t buf[MAX_PDU];
  if (read_all(fd, buf, 16) != 0) return -1;
  uint16_t frag = (uint16_t)(buf[8] | buf[9] << 8);
  if (frag < 16 || frag > MAX_PDU) return -1;
  if (read_all(fd, buf + 16, frag - 16u) != 0) return -1;
  return buf[2];
}

static int connect_to(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int bind_on(int fd, const pdu_t *bind) {
  return write_all(fd, bind->bytes, bind->length) == 0 && read_pdu(fd) == PTYPE_BIND_ACK ? 0 : -1;
}

static int compare_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s HOST PORT SECONDS keepalive|newconn PDUFILE\n", argv[0]);
    return 2;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) return 2;
  uint64_t duration = (uint64_t)(atof(argv[3]) * 1e6);
  int keepalive = strcmp(argv[4], "keepalive") == 0;

  /* The file: u32 count, then count × (u32 length, bytes); the first PDU is the bind. */
  FILE *f = fopen(argv[5], "rb");
  if (!f) return 2;
  uint8_t word[4];
  if (fread(word, 1, 4, f) != 4) return 2;
  uint32_t count = le32(word);
  if (count < 2) return 2;
  pdu_t *pdus = calloc(count, sizeof *pdus);
  for (uint32_t i = 0; i < count; i++) {
    if (fread(word, 1, 4, f) != 4) return 2;
    pdus[i].length = le32(word);
    pdus[i].bytes = malloc(pdus[i].length);
    if (fread(pdus[i].bytes, 1, pdus[i].length, f) != pdus[i].length) return 2;
  }
  fclose(f);

  uint32_t *samples = malloc(sizeof(uint32_t) * MAX_SAMPLES);
  uint64_t requests = 0, errors = 0, next = 0;
  uint32_t call_id = 2;
  int fd = -1;
  uint64_t started = now_us();
  while (now_us() - started < duration) {
    uint64_t t0 = now_us(); /* with a new connection, connect and bind count as part of the activation */
    if (fd < 0) {
      fd = connect_to(&addr);
      if (fd < 0 || bind_on(fd, &pdus[0]) != 0) {
        errors++;
        if (fd >= 0) close(fd);
        fd = -1;
        usleep(1000);
        continue;
      }
      call_id = 2;
    }
    pdu_t *req = &pdus[1 + next++ % (count - 1)];
    call_id++;
    memcpy(req->bytes + 12, &call_id, 4); /* call_id, little-endian on every bench machine */
    int ok = write_all(fd, req->bytes, req->length) == 0 && read_pdu(fd) == PTYPE_RESPONSE;
    uint64_t t1 = now_us();
    if (ok) {
      if (requests < MAX_SAMPLES) samples[requests] = (uint32_t)(t1 - t0);
      requests++;
    } else {
      errors++;
    }
    if (!ok || !keepalive) {
      close(fd);
      fd = -1;
    }
  }
  uint64_t elapsed = now_us() - started;
  if (fd >= 0) close(fd);
  uint64_t n = requests < MAX_SAMPLES ? requests : MAX_SAMPLES;
  qsort(samples, n, sizeof *samples, compare_u32);
  uint32_t p50 = n ? samples[n / 2] : 0, p99 = n ? samples[n * 99 / 100] : 0;
  printf("%llu %llu %llu %u %u\n", (unsigned long long)requests, (unsigned long long)errors, (unsigned long long)elapsed, p50, p99);
  return 0;
}
