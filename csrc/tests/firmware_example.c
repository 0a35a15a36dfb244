/*
 * What a firmware does with the static library: link libarmscore.a, include arms_core.h,
 * build and sign a heartbeat, frame a message as a tunnel chunk and decode it back.
 * Prints the heartbeat and the chunk in hex (tests/test_core_cross.py compares them with the
 * Python reference).
 */
#include <stdio.h>
#include <string.h>

#include "arms_core.h"

static void hex(const uint8_t *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\n");
}

int main(void)
{
    struct arms_hb_packet hb;
    struct arms_chunk_decoder dec;
    struct arms_chunk_event ev;
    uint8_t id[16], out[128];
    static const char msg[] = "<arms-message></arms-message>";
    long n, used;

    memset(&hb, 0, sizeof hb);
    memset(&dec, 0, sizeof dec);
    if (arms_hb_parse_distribution_id("0001-1234-5678-0101-0011-2233-4455-6677", id) != 0)
        return 1;
    arms_hb_set_distribution_id(&hb, id);
    arms_hb_set_cpu_usage(&hb, 0, 42);
    arms_hb_set_radiowave(&hb, 4, 0, 90, 10, 55);
    if (arms_hb_sign(&hb, (const uint8_t *)"secret", 6) != ARMS_HB_OK)
        return 1;
    hex(hb.buf, hb.len);
    n = arms_chunk_encode(out, sizeof out, (const uint8_t *)msg, strlen(msg), 1234, 1);
    if (n < 0)
        return 1;
    hex(out, (size_t)n);
    used = arms_chunk_decode(&dec, out, (size_t)n, &ev);
    if (used < 0 || ev.kind != ARMS_CHUNK_EV_DATA || ev.data_len != strlen(msg))
        return 1;
    used += arms_chunk_decode(&dec, out + used, (size_t)(n - used), &ev);
    if (ev.kind != ARMS_CHUNK_EV_CHUNK || ev.id != 1234 || !(ev.flags & ARMS_CHUNK_F_TRAIL)
        || used != n)
        return 1;
    printf("decoded id=%u trail\n", ev.id);
    return 0;
}
