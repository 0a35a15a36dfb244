/* Heartbeat datagram builder: see arms_hb.h for the contracts. libc only. */
#include "arms_hb.h"

#include <string.h>

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put64(uint8_t *b, uint64_t v)
{
    int i;
    for (i = 7; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint16_t get16(const uint8_t *b)
{
    return (uint16_t)((uint16_t)b[0] << 8 | b[1]);
}

/* Write the TL headers of the prefix; the distribution id bytes (28..43) are left as they are
 * (zero in a zero-filled packet). */
static void ensure_prefix(struct arms_hb_packet *p)
{
    if (p->len >= ARMS_HB_PREFIX_LEN && p->len <= ARMS_HB_MAX_PACKET)
        return;
    put16(p->buf + 0, ARMS_HB_T_HMAC);
    put16(p->buf + 2, ARMS_HB_DIGEST_LEN);
    memset(p->buf + ARMS_HB_DIGEST_OFF, 0, ARMS_HB_DIGEST_LEN);
    put16(p->buf + 24, ARMS_HB_T_DISTID);
    put16(p->buf + 26, ARMS_HB_DISTID_LEN);
    memset(p->buf + ARMS_HB_PREFIX_LEN, 0, sizeof p->buf - ARMS_HB_PREFIX_LEN);
    p->len = ARMS_HB_PREFIX_LEN;
}

int arms_hb_set_distribution_id(struct arms_hb_packet *p, const uint8_t id[ARMS_HB_DISTID_LEN])
{
    if (p == NULL || id == NULL)
        return ARMS_HB_EINVAL;
    ensure_prefix(p);
    memcpy(p->buf + 28, id, ARMS_HB_DISTID_LEN);
    return ARMS_HB_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int arms_hb_parse_distribution_id(const char *text, uint8_t out[ARMS_HB_DISTID_LEN])
{
    uint8_t tmp[ARMS_HB_DISTID_LEN];
    int group, i;
    if (text == NULL || out == NULL)
        return -1;
    for (group = 0; group < 8; group++) {
        const char *g = text + group * 5;
        int v[4];
        for (i = 0; i < 4; i++) {
            v[i] = hexval(g[i]);
            if (v[i] < 0)
                return -1;
        }
        if (g[4] != (group == 7 ? '\0' : '-'))
            return -1;
        tmp[group * 2] = (uint8_t)(v[0] << 4 | v[1]);
        tmp[group * 2 + 1] = (uint8_t)(v[2] << 4 | v[3]);
    }
    memcpy(out, tmp, sizeof tmp);
    return 0;
}

void arms_hb_clear(struct arms_hb_packet *p)
{
    if (p == NULL)
        return;
    ensure_prefix(p);
    memset(p->buf + ARMS_HB_PREFIX_LEN, 0, sizeof p->buf - ARMS_HB_PREFIX_LEN);
    p->len = ARMS_HB_PREFIX_LEN;
}

/* Reserve room for an item of `vlen` value bytes whose index is `idx`. Returns a pointer to
 * the value bytes (the TL header is already written) or NULL with *rc set. */
static uint8_t *append(struct arms_hb_packet *p, uint16_t type, uint16_t vlen, uint16_t idx,
                       int *rc)
{
    size_t pos;
    uint8_t *item;
    if (p == NULL) {
        *rc = ARMS_HB_EINVAL;
        return NULL;
    }
    ensure_prefix(p);
    /* duplicate: same type, same length, same first two value bytes (the index) */
    for (pos = ARMS_HB_PREFIX_LEN; pos + 4 <= p->len;) {
        uint16_t t = get16(p->buf + pos);
        uint16_t l = get16(p->buf + pos + 2);
        if (pos + 4 + l > p->len)
            break; /* cannot happen with packets built here */
        if (t == type && l == vlen && l >= 2 && get16(p->buf + pos + 4) == idx) {
            *rc = ARMS_HB_EEXIST;
            return NULL;
        }
        pos += 4 + (size_t)l;
    }
    if ((size_t)p->len + 4 + vlen > ARMS_HB_MAX_PACKET) {
        *rc = ARMS_HB_ESIZE;
        return NULL;
    }
    item = p->buf + p->len;
    put16(item, type);
    put16(item + 2, vlen);
    put16(item + 4, idx);
    p->len = (uint16_t)(p->len + 4 + vlen);
    *rc = ARMS_HB_OK;
    return item + 6; /* after the index */
}

int arms_hb_set_cpu_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t utilization)
{
    int rc;
    uint8_t *v = append(p, ARMS_HB_T_CPU_USAGE, 3, idx, &rc);
    if (v != NULL)
        v[0] = utilization;
    return rc;
}

int arms_hb_set_cpu_detail_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t idle,
                                 uint8_t interrupt, uint8_t user, uint8_t sys, uint8_t other)
{
    int rc;
    uint8_t *v = append(p, ARMS_HB_T_CPU_DETAIL, 7, idx, &rc);
    if (v != NULL) {
        v[0] = idle;
        v[1] = interrupt;
        v[2] = user;
        v[3] = sys;
        v[4] = other;
    }
    return rc;
}

static int set_used_avail(struct arms_hb_packet *p, uint16_t type, uint16_t idx, uint64_t used,
                          uint64_t avail)
{
    int rc;
    uint8_t *v = append(p, type, 18, idx, &rc);
    if (v != NULL) {
        put64(v, used);
        put64(v + 8, avail);
    }
    return rc;
}

int arms_hb_set_mem_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used, uint64_t avail)
{
    return set_used_avail(p, ARMS_HB_T_MEM_USAGE, idx, used, avail);
}

int arms_hb_set_disk_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used,
                           uint64_t avail)
{
    return set_used_avail(p, ARMS_HB_T_DISK_USAGE, idx, used, avail);
}

static int set_traffic(struct arms_hb_packet *p, uint16_t type, uint16_t ifidx,
                       const uint64_t vals[6])
{
    int rc, i;
    uint8_t *v = append(p, type, 50, ifidx, &rc);
    if (v != NULL)
        for (i = 0; i < 6; i++)
            put64(v + 8 * i, vals[i]);
    return rc;
}

int arms_hb_set_traffic_count(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                              uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                              uint64_t in_error, uint64_t out_error)
{
    const uint64_t vals[6] = {in_octet, out_octet, in_packet, out_packet, in_error, out_error};
    return set_traffic(p, ARMS_HB_T_TRAFFIC_COUNT, ifidx, vals);
}

int arms_hb_set_traffic_rate(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                             uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                             uint64_t in_error, uint64_t out_error)
{
    const uint64_t vals[6] = {in_octet, out_octet, in_packet, out_packet, in_error, out_error};
    return set_traffic(p, ARMS_HB_T_TRAFFIC_RATE, ifidx, vals);
}

int arms_hb_set_radiowave(struct arms_hb_packet *p, uint16_t ifidx, uint8_t status,
                          uint8_t max, uint8_t min, uint8_t avg)
{
    int rc;
    uint8_t *v = append(p, ARMS_HB_T_RADIOWAVE, 6, ifidx, &rc);
    if (v != NULL) {
        v[0] = status;
        v[1] = max;
        v[2] = min;
        v[3] = avg;
    }
    return rc;
}

const uint8_t *arms_hb_digest_input(struct arms_hb_packet *p, size_t *len)
{
    ensure_prefix(p);
    memset(p->buf + ARMS_HB_DIGEST_OFF, 0, ARMS_HB_DIGEST_LEN);
    if (len != NULL)
        *len = p->len;
    return p->buf;
}

void arms_hb_set_digest(struct arms_hb_packet *p, const uint8_t digest[ARMS_HB_DIGEST_LEN])
{
    ensure_prefix(p);
    memcpy(p->buf + ARMS_HB_DIGEST_OFF, digest, ARMS_HB_DIGEST_LEN);
}
