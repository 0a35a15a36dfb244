/*
 * Tunnel keepalive bookkeeping (arms-wire.md 5.6), sans-I/O: deadlines in, actions out.
 *
 * The caller owns the clock (any monotonic milliseconds), the socket and the writes. It calls
 * arms_keepalive_poll() whenever arms_keepalive_next_deadline() has passed (and may call it
 * more often), and reports what happened on the tunnel with the other functions:
 *
 *   HTTP 200 head arrives          -> arms_keepalive_start(k, now, E)
 *   confirmation completed         -> arms_keepalive_confirmed(k, now)
 *   any read or write on the tunnel -> arms_keepalive_activity(k, now)
 *   a chunk with echo/echo-response -> arms_keepalive_echo_answered(k)
 *
 * poll() returns what to do now:
 *   ARMS_KA_SEND_ECHO - write ARMS_CHUNK_ECHO_REQUEST now (if that write cannot be made within
 *                       10 s the tunnel is dead); the echo is already marked as sent and the
 *                       next tick is E ms later.
 *   ARMS_KA_DEAD      - the previous echo is still unanswered at this tick: drop the tunnel.
 *   ARMS_KA_IDLE      - E ms (10 s right after a confirmation) without any read or write:
 *                       drop the tunnel if a write is stuck, otherwise carry on.
 *   ARMS_KA_NONE      - nothing due (a tick that falls while a message is being written is
 *                       moved 1 s later, as libarms 5.33 does).
 *
 * State is a caller-owned struct valid when zero-filled (then disarmed: poll returns NONE and
 * next_deadline UINT64_MAX). No allocation, no I/O, no clock reads.
 */
#ifndef ARMS_KEEPALIVE_H
#define ARMS_KEEPALIVE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARMS_KA_DEFAULT_INTERVAL_MS 60000u /* https-tunnel-echo-interval default: 60 s */
#define ARMS_KA_CONFIRMED_IDLE_MS   10000u /* inactivity period right after a confirmation */
#define ARMS_KA_BUSY_RETRY_MS       1000u  /* a tick during a message write is retried 1 s later */

#define ARMS_KA_NONE      0
#define ARMS_KA_SEND_ECHO 1
#define ARMS_KA_DEAD      2
#define ARMS_KA_IDLE      3

struct arms_keepalive {
    uint64_t interval_ms;      /* E */
    uint64_t next_tick_ms;     /* next echo tick */
    uint64_t idle_deadline_ms; /* inactivity deadline */
    uint8_t  armed;            /* set by arms_keepalive_start */
    uint8_t  echo_outstanding; /* an echo was sent and not answered yet */
    uint8_t  reserved[6];
};

/* arms_keepalive_start: the tunnel's HTTP 200 arrived at now_ms; E = interval_ms (0 means
 * 60000). Clears any outstanding echo; first tick at now + E, inactivity deadline now + E. */
void arms_keepalive_start(struct arms_keepalive *k, uint64_t now_ms, uint64_t interval_ms);

/* arms_keepalive_confirmed: the confirmation completed: the echo counts as answered and the
 * inactivity deadline becomes now + 10 s. */
void arms_keepalive_confirmed(struct arms_keepalive *k, uint64_t now_ms);

/* arms_keepalive_activity: a read or write happened: inactivity deadline = now + E. */
void arms_keepalive_activity(struct arms_keepalive *k, uint64_t now_ms);

/* arms_keepalive_echo_answered: an echo / echo-response chunk arrived. */
void arms_keepalive_echo_answered(struct arms_keepalive *k);

/* arms_keepalive_poll: see the table above. `writing` is non-zero while a message is being
 * written. At most one action per call; call again to see the next. */
int arms_keepalive_poll(struct arms_keepalive *k, uint64_t now_ms, int writing);

/* arms_keepalive_next_deadline: the earliest time poll() may have something to do, or
 * UINT64_MAX when disarmed. */
uint64_t arms_keepalive_next_deadline(const struct arms_keepalive *k);

/* arms_keepalive_stop: disarm (the tunnel is gone). */
void arms_keepalive_stop(struct arms_keepalive *k);

#ifdef __cplusplus
}
#endif
#endif /* ARMS_KEEPALIVE_H */
