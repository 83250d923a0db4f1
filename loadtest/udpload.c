/* udpload: closed-loop UDP load generator, udpblast (loadtest/udpblast.c) extended
 * for the cache benchmarks. Same loop, same request-id matching, same loss rule and the
 * same report line, plus:
 *
 *   - several source sockets (-s): SO_REUSEPORT hashes the 4-tuple, so one socket would
 *     send every request to one worker of `idnode serve --workers N`;
 *   - requests made from one template (-t) by writing a key as zero-padded decimal digits
 *     at a byte offset (-k OFF:WIDTH): any number of distinct identifiers, not udpblast's
 *     4096 lines, which a cache would hold after the first pass;
 *   - the key stream (-m): perm (every key of 0..N-1 once per N requests, from index -b:
 *     a miss path that never repeats), zipf (rank r with probability ~ r^-S over N keys),
 *     hot (uniform over K keys); ranks are scattered over 0..N-1 by a multiplicative
 *     permutation, so hot keys are not neighbours in the table;
 *   - -c COUNT: send at most COUNT requests, then wait for the last replies and stop
 *     (warming a cache with every key exactly once).
 *
 * usage: udpload HOST PORT SECONDS WINDOW (-f HEXFILE | -t HEX -k OFF:WIDTH) [-s SOCKETS]
 *          [-m perm|zipf|hot] [-n N] [-z S] [-K K] [-b START] [-c COUNT] [-r SEED]
 * prints: replies R lost L seconds T rate X/s p50 Ams p99 Bms sent S next I
 *   (next: the perm index to start the following run at, so runs never repeat a key) */
#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXREQ 4096
#define MAXSOCK 64
#define IDOFF 8 /* request id in the Handle envelope (docs/protocol.md) */
#define IDLEN 4
#define SCATTER 2654435761ULL /* prime, larger than any key space: i -> i*SCATTER mod N is a permutation */

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) { rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27; return rng_state * 2685821657736338717ULL; }
static double unif(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }
static int hexline(const char *p, unsigned char *out, int max) {
  int n = 0; for (; p[0] && p[1] && p[0] != '\n' && n < max; p += 2) { unsigned v; if (sscanf(p, "%2x", &v) != 1) break; out[n++] = v; }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: udpload HOST PORT SECONDS WINDOW (-f FILE | -t HEX -k OFF:WIDTH) [options]\n"); return 2; }
  const char *host = argv[1]; int port = atoi(argv[2]); double secs = atof(argv[3]); int window = atoi(argv[4]);
  const char *file = NULL, *tmpl = NULL, *mode = "perm"; int koff = -1, kwidth = 0, nsock = 1;
  uint64_t n = 1, hot = 1, start = 0, count = 0; double zs = 1.1;
  for (int i = 5; i + 1 < argc; i += 2) {
    const char *o = argv[i], *v = argv[i + 1];
    if (!strcmp(o, "-f")) file = v; else if (!strcmp(o, "-t")) tmpl = v;
    else if (!strcmp(o, "-k")) { if (sscanf(v, "%d:%d", &koff, &kwidth) != 2) { fprintf(stderr, "bad -k\n"); return 2; } }
    else if (!strcmp(o, "-s")) nsock = atoi(v); else if (!strcmp(o, "-m")) mode = v;
    else if (!strcmp(o, "-n")) n = strtoull(v, 0, 10); else if (!strcmp(o, "-z")) zs = atof(v);
    else if (!strcmp(o, "-K")) hot = strtoull(v, 0, 10); else if (!strcmp(o, "-b")) start = strtoull(v, 0, 10);
    else if (!strcmp(o, "-c")) count = strtoull(v, 0, 10); else if (!strcmp(o, "-r")) rng_state ^= strtoull(v, 0, 10) * 0x9E3779B97F4A7C15ULL;
    else { fprintf(stderr, "unknown option %s\n", o); return 2; }
  }
  if (nsock < 1 || nsock > MAXSOCK || window < 1 || n < 1 || hot < 1) { fprintf(stderr, "bad -s/-n/-K or window\n"); return 2; }
  static unsigned char reqs[MAXREQ][600]; static int lens[MAXREQ]; int nreq = 0; char line[2048];
  if (file) {
    FILE *f = fopen(file, "r"); if (!f) { perror("open"); return 2; }
    while (nreq < MAXREQ && fgets(line, sizeof line, f)) { int l = hexline(line, reqs[nreq], 600); if (l) lens[nreq++] = l; }
    fclose(f);
  } else if (tmpl) {
    lens[0] = hexline(tmpl, reqs[0], 600); nreq = 1;
    double lim = pow(10, kwidth);
    if (koff < 0 || kwidth < 1 || koff + kwidth > lens[0] || (double)n > lim) { fprintf(stderr, "bad -k for the template or key space\n"); return 2; }
  }
  if (!nreq || lens[0] < IDOFF + IDLEN) { fprintf(stderr, "no requests\n"); return 2; }
  int zipf = !strcmp(mode, "zipf"), hotm = !strcmp(mode, "hot"), perm = !strcmp(mode, "perm");
  if (!(zipf || hotm || perm)) { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
  double *cdf = NULL;
  if (tmpl && zipf) { /* inverse-CDF table: N doubles, one binary search per request */
    cdf = malloc(n * sizeof(double)); if (!cdf) { perror("malloc"); return 2; }
    double acc = 0; for (uint64_t r = 0; r < n; r++) { acc += pow((double)(r + 1), -zs); cdf[r] = acc; }
    for (uint64_t r = 0; r < n; r++) cdf[r] /= acc;
  }
  int socks[MAXSOCK]; struct pollfd pfd[MAXSOCK]; struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port);
  inet_pton(AF_INET, host, &a.sin_addr);
  for (int i = 0; i < nsock; i++) {
    int s = socket(AF_INET, SOCK_DGRAM, 0); if (s < 0) { perror("socket"); return 2; }
    connect(s, (struct sockaddr *)&a, sizeof a); fcntl(s, F_SETFL, O_NONBLOCK);
    int rb = 4 << 20; setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    socks[i] = s; pfd[i].fd = s; pfd[i].events = POLLIN;
  }
  uint32_t mask = 65535; double *sent = calloc(mask + 1, sizeof(double)); size_t cap = 1 << 24, nlat = 0;
  double *lat = malloc(cap * sizeof(double)); uint32_t next = 1; long inflight = 0, ok = 0, lost = 0;
  uint64_t k = 0, pidx = start; int sock_rr = 0;
  double t0 = now(), end = t0 + secs, lastsend = t0; unsigned char buf[70000]; char digits[32];
  while (now() < end) {
    while (inflight < window && (!count || k < count)) {
      unsigned char *r = reqs[k % nreq]; int len = lens[k % nreq]; k++;
      if (tmpl) {
        uint64_t key;
        if (perm) key = ((pidx++ % n) * SCATTER) % n;
        else if (hotm) key = ((rnd() % hot) * SCATTER) % n;
        else { double u = unif(); uint64_t lo = 0, hi = n - 1; while (lo < hi) { uint64_t mid = (lo + hi) / 2; if (cdf[mid] < u) lo = mid + 1; else hi = mid; } key = (lo * SCATTER) % n; }
        snprintf(digits, sizeof digits, "%0*llu", kwidth, (unsigned long long)key); memcpy(r + koff, digits, kwidth);
      }
      uint32_t id = next++ & mask; if (!id) id = next++ & mask;
      for (int i = 0; i < IDLEN; i++) r[IDOFF + i] = (id >> (8 * (IDLEN - 1 - i))) & 0xff;
      sent[id] = now(); if (send(socks[sock_rr], r, len, 0) < 0) { k--; if (perm && tmpl) pidx--; break; }
      sock_rr = (sock_rr + 1) % nsock; inflight++; lastsend = now();
    }
    if (count && k >= count && inflight == 0) break;
    int pr = poll(pfd, nsock, 50);
    if (pr == 0 && now() - lastsend > 0.2) { lost += inflight; inflight = 0; if (count && k >= count) break; continue; } /* timeouts: refill */
    for (int i = 0; i < nsock; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      for (;;) {
        ssize_t got = recv(socks[i], buf, sizeof buf, 0); if (got < 0) break;
        if (got < IDOFF + IDLEN) continue;
        uint32_t id = 0; for (int j = 0; j < IDLEN; j++) id = (id << 8) | buf[IDOFF + j]; id &= mask;
        if (sent[id] > 0) { if (nlat < cap) lat[nlat++] = now() - sent[id]; sent[id] = 0; ok++; inflight--; }
      }
    }
  }
  double el = now() - t0; qsort(lat, nlat, sizeof(double), cmpd);
  double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0;
  printf("replies %ld lost %ld seconds %.2f rate %.0f/s p50 %.3fms p99 %.3fms sent %llu next %llu\n", ok, lost, el,
         ok / el, p50 * 1e3, p99 * 1e3, (unsigned long long)k, (unsigned long long)pidx);
  return 0;
}
