/* Heartbeat sender thread: see arms_hb_sender.h for the design and the contracts. */
#define _GNU_SOURCE 1
#include "arms_hb_sender.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S  1000000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Wait on cond until the monotonic time `at_ns`; returns like pthread_cond_timedwait. */
static int wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t at_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(at_ns / NS_PER_S);
    ts.tv_nsec = (long)(at_ns % NS_PER_S);
    return pthread_cond_timedwait(cond, lock, &ts);
}

static int make_cond(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

int arms_hb_sender_init(struct arms_hb_sender *s)
{
    int rc;
    memset(s, 0, sizeof *s);
    rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0)
        return rc;
    rc = make_cond(&s->cond);
    if (rc != 0) {
        pthread_mutex_destroy(&s->lock);
        return rc;
    }
    rc = make_cond(&s->req_cond);
    if (rc != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        return rc;
    }
    s->sock4 = -1;
    s->sock6 = -1;
    s->family = AF_UNSPEC;
    s->interval_ns = 60 * NS_PER_S;
    s->lead_ns = 100 * NS_PER_MS;
    arms_hb_clear(&s->latest);
    s->inited = 1;
    return 0;
}

void arms_hb_sender_destroy(struct arms_hb_sender *s)
{
    if (!s->inited)
        return;
    arms_hb_sender_stop(s);
    if (s->sock4 >= 0)
        close(s->sock4);
    if (s->sock6 >= 0)
        close(s->sock6);
    s->sock4 = s->sock6 = -1;
    pthread_cond_destroy(&s->req_cond);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    s->inited = 0;
}

int arms_hb_sender_configure(struct arms_hb_sender *s, const uint8_t distid[ARMS_HB_DISTID_LEN],
                             uint32_t interval_ms, uint32_t lead_ms, int family)
{
    if (distid == NULL || interval_ms == 0
        || (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return ARMS_HB_EINVAL;
    pthread_mutex_lock(&s->lock);
    memcpy(s->distid, distid, ARMS_HB_DISTID_LEN);
    arms_hb_set_distribution_id(&s->latest, distid);
    s->interval_ns = (uint64_t)interval_ms * NS_PER_MS;
    s->lead_ns = (uint64_t)lead_ms * NS_PER_MS;
    if (s->lead_ns > s->interval_ns / 2)
        s->lead_ns = s->interval_ns / 2;
    s->family = family;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return ARMS_HB_OK;
}

void arms_hb_sender_clear_servers(struct arms_hb_sender *s)
{
    pthread_mutex_lock(&s->lock);
    memset(s->servers, 0, sizeof s->servers);
    s->nservers = 0;
    pthread_mutex_unlock(&s->lock);
}

int arms_hb_sender_add_server(struct arms_hb_sender *s, const char *host, uint16_t port,
                              const uint8_t *key, uint32_t keylen)
{
    struct arms_hb_server srv;
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    int rc = ARMS_HB_OK;

    if (host == NULL || strlen(host) > ARMS_HB_MAX_HOST || keylen > ARMS_HB_MAX_PASSPHRASE
        || (key == NULL && keylen != 0))
        return ARMS_HB_EINVAL;
    memset(&srv, 0, sizeof srv);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    portstr[0] = '\0';
    {
        /* port as decimal text without snprintf's locale machinery */
        char tmp[8];
        int n = 0, i = 0;
        unsigned v = port;
        do {
            tmp[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0)
            portstr[i++] = tmp[--n];
        portstr[i] = '\0';
    }
    if (getaddrinfo(host, portstr, &hints, &res) == 0 && res != NULL
        && res->ai_addrlen <= sizeof srv.addr) {
        memcpy(&srv.addr, res->ai_addr, res->ai_addrlen);
        srv.addrlen = (uint32_t)res->ai_addrlen;
    } else {
        rc = 1; /* kept, but unusable: a name is never resolved (libarms: AI_NUMERICHOST) */
    }
    if (res != NULL)
        freeaddrinfo(res);
    if (keylen > 0)
        memcpy(srv.key, key, keylen);
    srv.keylen = keylen;

    pthread_mutex_lock(&s->lock);
    if (s->nservers >= ARMS_HB_MAX_SERVERS) {
        pthread_mutex_unlock(&s->lock);
        return ARMS_HB_EINVAL;
    }
    s->servers[s->nservers++] = srv;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void arms_hb_sender_set_callback(struct arms_hb_sender *s, arms_hb_stats_fn cb, void *arg)
{
    pthread_mutex_lock(&s->lock);
    s->stats_cb = cb;
    s->stats_arg = arg;
    pthread_mutex_unlock(&s->lock);
}

static int socket_for(struct arms_hb_sender *s, int family)
{
    int *slot = family == AF_INET6 ? &s->sock6 : &s->sock4;
    if (*slot < 0) {
        int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        *slot = fd;
    }
    return *slot;
}

/* Sign `pkt` for every server and send it. Called with the lock held. */
static void send_round(struct arms_hb_sender *s, struct arms_hb_packet *pkt)
{
    int i;
    for (i = 0; i < s->nservers; i++) {
        struct arms_hb_server *srv = &s->servers[i];
        int fam, fd;
        if (srv->addrlen == 0) {
            s->stats.errors++;
            continue;
        }
        fam = srv->addr.ss_family;
        if (s->family != AF_UNSPEC && fam != s->family)
            continue; /* other address family than the SA's: skipped, as libarms does */
        if (arms_hb_sign(pkt, srv->key, srv->keylen) != ARMS_HB_OK) {
            s->stats.errors++;
            continue;
        }
        fd = socket_for(s, fam);
        if (fd < 0 || sendto(fd, pkt->buf, pkt->len, MSG_DONTWAIT,
                             (const struct sockaddr *)&srv->addr,
                             (socklen_t)srv->addrlen) != (ssize_t)pkt->len)
            s->stats.errors++;
        else
            s->stats.sent++;
    }
}

static void *sender_main(void *arg)
{
    struct arms_hb_sender *s = arg;
    struct arms_hb_packet pkt;
    uint64_t deadline, req_at, this_req = 0;
    int asked = 0;

#if defined(__linux__) && (defined(__GLIBC__) || defined(__UCLIBC__))
    pthread_setname_np(pthread_self(), "arms-heartbeat"); /* visible in ps -L, top -H */
#endif
    pthread_mutex_lock(&s->lock);
    deadline = mono_ns() + (s->stats_cb != NULL ? 0 : s->lead_ns);
    req_at = deadline - (s->stats_cb != NULL ? 0 : s->lead_ns);
    while (!s->stopping) {
        if (s->stats_cb == NULL && !asked) {
            while (!s->stopping && mono_ns() < req_at)
                wait_until(&s->cond, &s->lock, req_at);
            if (s->stopping)
                break;
            if (s->paused != 2) {
                this_req = ++s->request_seq;
                s->stats.requests++;
                pthread_cond_broadcast(&s->req_cond);
            }
            asked = 1;
        }
        while (!s->stopping && mono_ns() < deadline)
            wait_until(&s->cond, &s->lock, deadline);
        if (s->stopping)
            break;
        s->stats.rounds++;
        if (s->paused == 2) {
            /* a configure is running: no callback, no datagram (arms-agent.md 1.6 step 1) */
        } else if (s->stats_cb != NULL) {
            arms_hb_stats_fn cb = s->stats_cb;
            void *cbarg = s->stats_arg;
            memset(&pkt, 0, sizeof pkt);
            arms_hb_set_distribution_id(&pkt, s->distid);
            pthread_mutex_unlock(&s->lock);
            cb(&pkt, cbarg); /* clear, callback, send: libarms' order */
            pthread_mutex_lock(&s->lock);
            s->latest = pkt;
            arms_hb_set_distribution_id(&s->latest, s->distid);
        } else if (s->answered_seq < this_req) {
            s->stats.late++;
        }
        if (s->paused) {
            s->stats.paused++;
        } else {
            pkt = s->latest;
            send_round(s, &pkt);
        }
        asked = 0;
        {
            uint64_t interval = s->interval_ns;
            uint64_t lead = s->stats_cb != NULL ? 0 : s->lead_ns;
            uint64_t now;
            if (lead > interval / 2)
                lead = interval / 2;
            deadline += interval;
            now = mono_ns();
            if (now > deadline + interval) /* suspended or starved for a whole interval */
                deadline = now + lead;
            req_at = deadline - lead;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int arms_hb_sender_start(struct arms_hb_sender *s)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    s->paused = 0;
    if (!s->started) {
        s->stopping = 0;
        rc = pthread_create(&s->thread, NULL, sender_main, s);
        if (rc == 0)
            s->started = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void arms_hb_sender_stop(struct arms_hb_sender *s)
{
    pthread_t th;
    pthread_mutex_lock(&s->lock);
    if (!s->started) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    s->stopping = 1;
    th = s->thread;
    pthread_cond_broadcast(&s->cond);
    pthread_cond_broadcast(&s->req_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(th, NULL);
    pthread_mutex_lock(&s->lock);
    s->started = 0;
    s->stopping = 0;
    pthread_cond_broadcast(&s->req_cond);
    pthread_mutex_unlock(&s->lock);
}

void arms_hb_sender_pause(struct arms_hb_sender *s, int paused)
{
    pthread_mutex_lock(&s->lock);
    s->paused = paused < 0 ? 0 : paused > 2 ? 2 : paused;
    pthread_mutex_unlock(&s->lock);
}

int arms_hb_sender_is_running(struct arms_hb_sender *s)
{
    int r;
    pthread_mutex_lock(&s->lock);
    r = s->started && !s->stopping && !s->paused;
    pthread_mutex_unlock(&s->lock);
    return r;
}

uint64_t arms_hb_sender_wait_request(struct arms_hb_sender *s, uint64_t seen, uint32_t timeout_ms)
{
    uint64_t at = mono_ns() + (uint64_t)timeout_ms * NS_PER_MS, r;
    pthread_mutex_lock(&s->lock);
    while (s->started && !s->stopping && s->request_seq <= seen) {
        if (wait_until(&s->req_cond, &s->lock, at) == ETIMEDOUT)
            break;
    }
    if (!s->started || s->stopping)
        r = 0;
    else
        r = s->request_seq > seen ? s->request_seq : seen;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void arms_hb_sender_publish(struct arms_hb_sender *s, const struct arms_hb_packet *pkt,
                            uint64_t seq)
{
    pthread_mutex_lock(&s->lock);
    s->latest = *pkt;
    if (s->latest.len < ARMS_HB_PREFIX_LEN || s->latest.len > ARMS_HB_MAX_PACKET)
        arms_hb_clear(&s->latest);
    arms_hb_set_distribution_id(&s->latest, s->distid);
    if (seq > s->answered_seq)
        s->answered_seq = seq;
    s->stats.publishes++;
    pthread_mutex_unlock(&s->lock);
}

void arms_hb_sender_get_stats(struct arms_hb_sender *s, struct arms_hb_sender_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}
