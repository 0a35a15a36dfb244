/* Tunnel keepalive bookkeeping: see arms_keepalive.h for the contracts. */
#include "arms_keepalive.h"

static uint64_t interval_of(const struct arms_keepalive *k)
{
    return k->interval_ms != 0 ? k->interval_ms : ARMS_KA_DEFAULT_INTERVAL_MS;
}

static uint64_t add_ms(uint64_t now, uint64_t d)
{
    return now > UINT64_MAX - d ? UINT64_MAX : now + d;
}

void arms_keepalive_start(struct arms_keepalive *k, uint64_t now_ms, uint64_t interval_ms)
{
    k->interval_ms = interval_ms != 0 ? interval_ms : ARMS_KA_DEFAULT_INTERVAL_MS;
    k->armed = 1;
    k->echo_outstanding = 0;
    k->next_tick_ms = add_ms(now_ms, k->interval_ms);
    k->idle_deadline_ms = add_ms(now_ms, k->interval_ms);
}

void arms_keepalive_confirmed(struct arms_keepalive *k, uint64_t now_ms)
{
    k->echo_outstanding = 0;
    k->idle_deadline_ms = add_ms(now_ms, ARMS_KA_CONFIRMED_IDLE_MS);
}

void arms_keepalive_activity(struct arms_keepalive *k, uint64_t now_ms)
{
    k->idle_deadline_ms = add_ms(now_ms, interval_of(k));
}

void arms_keepalive_echo_answered(struct arms_keepalive *k)
{
    k->echo_outstanding = 0;
}

int arms_keepalive_poll(struct arms_keepalive *k, uint64_t now_ms, int writing)
{
    if (!k->armed)
        return ARMS_KA_NONE;
    if (now_ms >= k->next_tick_ms) {
        if (k->echo_outstanding)
            return ARMS_KA_DEAD;
        if (writing) {
            k->next_tick_ms = add_ms(now_ms, ARMS_KA_BUSY_RETRY_MS);
            return ARMS_KA_NONE;
        }
        k->echo_outstanding = 1;
        k->next_tick_ms = add_ms(now_ms, interval_of(k));
        return ARMS_KA_SEND_ECHO;
    }
    if (now_ms >= k->idle_deadline_ms) {
        k->idle_deadline_ms = add_ms(now_ms, interval_of(k));
        return ARMS_KA_IDLE;
    }
    return ARMS_KA_NONE;
}

uint64_t arms_keepalive_next_deadline(const struct arms_keepalive *k)
{
    if (!k->armed)
        return UINT64_MAX;
    return k->next_tick_ms < k->idle_deadline_ms ? k->next_tick_ms : k->idle_deadline_ms;
}

void arms_keepalive_stop(struct arms_keepalive *k)
{
    k->armed = 0;
    k->echo_outstanding = 0;
}
