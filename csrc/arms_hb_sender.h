/*
 * Heartbeat sender: one POSIX thread that owns the UDP sockets and sends the datagram to up
 * to 5 servers every interval (arms-agent.md 1.6-1.7), each signed with its own passphrase.
 *
 * How statistics reach the packet -- two modes:
 *
 *  - In-thread callback (C firmware): arms_hb_sender_set_callback(). At every deadline the
 *    thread clears a packet, calls the callback, and sends right away: exactly libarms' order
 *    (clear, callback, send).
 *
 *  - Request / publish (Python, or any caller that must not run inside the sender thread):
 *    `lead_ms` before each deadline the thread raises a request (a sequence number) and wakes
 *    arms_hb_sender_wait_request(). The caller clears its own packet, fills it (the Python
 *    statistics callback runs here, holding the GIL) and hands it over with
 *    arms_hb_sender_publish(). At the deadline the thread sends whatever was published last.
 *    In the normal case the callback takes far less than lead_ms, so the packet that leaves
 *    at the deadline holds the metrics set in the callback that ran just before it: the spec's
 *    callback-then-send order, shifted lead_ms earlier. When the callback is late (the GIL is
 *    held elsewhere, the callback blocks) the datagram still leaves on time with the latest
 *    metrics published (`late` counts those rounds), and the late metrics go out next round.
 *    The sender thread never takes the GIL and never waits for the caller.
 *
 * The first datagram leaves lead_ms after arms_hb_sender_start() (right after the confirmation),
 * then one every interval, measured deadline to deadline on CLOCK_MONOTONIC, so a slow round
 * does not shift the next. A round whose deadline has passed by more than one interval (the
 * machine was suspended) restarts the schedule from now instead of bursting.
 *
 * Paused (arms_hb_stop in libarms): requests / callbacks go on every interval, nothing is sent;
 * held (a configure is running): neither callbacks nor datagrams, the schedule keeps running.
 * Servers whose address family differs from the `family` filter are skipped silently; a server
 * whose host is not a numeric address counts one error per round (libarms sends nothing to it
 * either). Sends are non-blocking; failures are counted, never retried.
 *
 * The struct is caller-owned; arms_hb_sender_init() must run before any other call and
 * arms_hb_sender_destroy() after the last one. The sender allocates nothing.
 */
#ifndef ARMS_HB_SENDER_H
#define ARMS_HB_SENDER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "arms_hb.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ARMS_HB_MAX_SERVERS    5
#define ARMS_HB_MAX_PASSPHRASE 1024 /* passphrase shorter than 1025 bytes */
#define ARMS_HB_MAX_HOST       255  /* host shorter than 256 bytes */

typedef void (*arms_hb_stats_fn)(struct arms_hb_packet *pkt, void *arg);

struct arms_hb_server {
    struct sockaddr_storage addr;
    uint32_t addrlen;                    /* 0: host was not a numeric address */
    uint32_t keylen;
    uint8_t  key[ARMS_HB_MAX_PASSPHRASE];
};

struct arms_hb_sender_stats {
    uint64_t rounds;     /* deadlines reached */
    uint64_t sent;       /* datagrams handed to the kernel */
    uint64_t errors;     /* failed sends, unusable servers, signing failures */
    uint64_t paused;     /* rounds skipped because sending was paused */
    uint64_t requests;   /* statistics requests raised (request / publish mode) */
    uint64_t publishes;  /* packets published */
    uint64_t late;       /* rounds sent before the statistics of their request arrived */
};

struct arms_hb_sender {
    pthread_mutex_t lock;
    pthread_cond_t  cond;        /* sender thread waits on it (stop, config changes) */
    pthread_cond_t  req_cond;    /* wait_request() waits on it */
    pthread_t       thread;
    int             inited, started, stopping, paused;
    int             family;      /* AF_UNSPEC: every server; AF_INET / AF_INET6: only those */
    uint64_t        interval_ns;
    uint64_t        lead_ns;
    uint64_t        request_seq;
    uint64_t        answered_seq;
    int             nservers;
    struct arms_hb_server servers[ARMS_HB_MAX_SERVERS];
    uint8_t         distid[ARMS_HB_DISTID_LEN];
    struct arms_hb_packet latest;  /* the metrics to send next */
    arms_hb_stats_fn stats_cb;
    void           *stats_arg;
    struct arms_hb_sender_stats stats;
    int             sock4, sock6;
};

/* arms_hb_sender_init: prepare a sender (not running, no servers, interval 60 s, lead
 * 100 ms). Returns 0, or an errno value when the mutex or conditions cannot be created. */
int arms_hb_sender_init(struct arms_hb_sender *s);

/* arms_hb_sender_destroy: stop the thread if running, close the sockets, free the locks. */
void arms_hb_sender_destroy(struct arms_hb_sender *s);

/* arms_hb_sender_configure: distribution id (16 wire bytes), interval and lead in ms
 * (interval > 0; lead is capped at interval / 2), address family filter. May be called
 * while running; takes effect from the next round. Returns 0 or ARMS_HB_EINVAL. */
int arms_hb_sender_configure(struct arms_hb_sender *s, const uint8_t distid[ARMS_HB_DISTID_LEN],
                             uint32_t interval_ms, uint32_t lead_ms, int family);

/* arms_hb_sender_set_servers_clear: forget every server. */
void arms_hb_sender_clear_servers(struct arms_hb_sender *s);

/* arms_hb_sender_add_server: add host (numeric IPv4 / IPv6 literal, NUL-terminated, < 256
 * bytes), UDP port and HMAC key (< 1025 bytes). A host that is not numeric is kept as an
 * unusable entry (counted as an error per round) and 1 is returned; 0 when usable;
 * ARMS_HB_EINVAL for an overlong host or key, or a 6th server. */
int arms_hb_sender_add_server(struct arms_hb_sender *s, const char *host, uint16_t port,
                              const uint8_t *key, uint32_t keylen);

/* arms_hb_sender_set_callback: in-thread statistics callback (NULL: request / publish mode). */
void arms_hb_sender_set_callback(struct arms_hb_sender *s, arms_hb_stats_fn cb, void *arg);

/* arms_hb_sender_start: start the thread (no-op when running); also clears a pause.
 * Returns 0, or an errno value from pthread_create. */
int arms_hb_sender_start(struct arms_hb_sender *s);

/* arms_hb_sender_stop: stop and join the thread; wakes wait_request() callers (they get 0).
 * The sender can be started again. */
void arms_hb_sender_stop(struct arms_hb_sender *s);

/* arms_hb_sender_pause: 1 pauses sending while statistics are still requested (libarms'
 * arms_hb_stop); 2 also stops asking for statistics (a configure is running, arms-agent.md 1.6
 * step 1); 0 resumes. The schedule keeps running either way. */
void arms_hb_sender_pause(struct arms_hb_sender *s, int paused);

/* arms_hb_sender_is_running: thread started and not paused. */
int arms_hb_sender_is_running(struct arms_hb_sender *s);

/* arms_hb_sender_wait_request: block until a statistics request newer than `seen` is raised
 * (returns its sequence number, > seen), the sender is stopped or not started (returns 0), or
 * timeout_ms passes (returns `seen`). */
uint64_t arms_hb_sender_wait_request(struct arms_hb_sender *s, uint64_t seen, uint32_t timeout_ms);

/* arms_hb_sender_publish: make pkt's items the ones to send (the distribution id set with
 * configure is used, not pkt's); `seq` is the request this answers (0 if none). */
void arms_hb_sender_publish(struct arms_hb_sender *s, const struct arms_hb_packet *pkt,
                            uint64_t seq);

/* arms_hb_sender_get_stats: copy the counters. */
void arms_hb_sender_get_stats(struct arms_hb_sender *s, struct arms_hb_sender_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* ARMS_HB_SENDER_H */
