/*
 * Heartbeat datagram builder (arms-agent.md 1.3-1.5, arms-wire.md App. A).
 *
 * A datagram is a flat run of TLVs, every integer big-endian:
 *
 *   offset 0   00 01 00 14  HMAC-SHA1 (20 bytes, computed with bytes 4..23 zeroed)
 *   offset 24  00 11 00 10  distribution id: u16 version, u32 vendor, u16 sa_type, u64 sa_code
 *   offset 44  items in the order they were set (CPU, memory, disk, traffic, radio)
 *
 * The builder needs libc only; it never computes a digest. Signing is a separate step: take
 * the bytes from arms_hb_digest_input(), compute HMAC-SHA1 with any implementation (libcrypto
 * in arms_hb_hmac.c, or a digest known in advance in a unit test) and store it with
 * arms_hb_set_digest(). That keeps the builder testable on targets without libcrypto.
 *
 * State is a caller-owned struct arms_hb_packet; a zero-filled one is a valid empty packet
 * with an all-zero distribution id. Nothing here allocates, locks or does I/O.
 */
#ifndef ARMS_HB_H
#define ARMS_HB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARMS_HB_MAX_PACKET   1024  /* libarms 5.33 heartbeat buffer */
#define ARMS_HB_PREFIX_LEN   44    /* HMAC TLV + distribution id TLV */
#define ARMS_HB_DIGEST_OFF   4
#define ARMS_HB_DIGEST_LEN   20
#define ARMS_HB_DISTID_LEN   16

/* Item types (u16 on the wire). */
#define ARMS_HB_T_HMAC          0x0001
#define ARMS_HB_T_DISTID        0x0011
#define ARMS_HB_T_RADIOWAVE     0x002c
#define ARMS_HB_T_CPU_USAGE     0x0033
#define ARMS_HB_T_CPU_DETAIL    0x0034
#define ARMS_HB_T_MEM_USAGE     0x0035
#define ARMS_HB_T_DISK_USAGE    0x0037
#define ARMS_HB_T_TRAFFIC_COUNT 0x0038
#define ARMS_HB_T_TRAFFIC_RATE  0x0039

/* Return codes: libarms' own numbers (arms-agent.md 4.9). */
#define ARMS_HB_OK      0
#define ARMS_HB_ESIZE   0x00fe  /* ARMS_ESIZE: the item does not fit in 1024 bytes */
#define ARMS_HB_EEXIST  0x0500  /* ARMS_EEXIST: same type and index already present */
#define ARMS_HB_EINVAL  0x04fc  /* ARMS_EINVAL: bad argument (NULL pointer) */

struct arms_hb_packet {
    uint16_t len;                      /* bytes used in buf; < 44 means "prefix not written" */
    uint8_t  buf[ARMS_HB_MAX_PACKET];  /* the datagram */
};

/*
 * arms_hb_set_distribution_id: store the 16 distribution id bytes (wire order: version,
 * vendor code, SA type, SA code, each big-endian) and write the 44-byte prefix if it is not
 * there yet. Items already set are kept. Returns ARMS_HB_OK or ARMS_HB_EINVAL.
 */
int arms_hb_set_distribution_id(struct arms_hb_packet *p, const uint8_t id[ARMS_HB_DISTID_LEN]);

/*
 * arms_hb_parse_distribution_id: parse "XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX" (hex digits,
 * either case, NUL-terminated) into its 16 wire bytes. Returns 0, or -1 if malformed.
 */
int arms_hb_parse_distribution_id(const char *text, uint8_t out[ARMS_HB_DISTID_LEN]);

/*
 * arms_hb_clear: drop every item (the item area is zeroed, as libarms does before each
 * statistics callback) and keep the prefix and distribution id; length becomes 44.
 */
void arms_hb_clear(struct arms_hb_packet *p);

/*
 * arms_hb_set_*: append one item. Returns ARMS_HB_OK, ARMS_HB_EEXIST when an item with the
 * same type, length and index (first two value bytes) is already in the packet (nothing is
 * appended), ARMS_HB_ESIZE when 4 + value length bytes do not fit in 1024 (an exact fit is
 * accepted), or ARMS_HB_EINVAL for a NULL packet. Values are not range-checked.
 */
int arms_hb_set_cpu_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t utilization);
int arms_hb_set_cpu_detail_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t idle,
                                 uint8_t interrupt, uint8_t user, uint8_t sys, uint8_t other);
int arms_hb_set_mem_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used, uint64_t avail);
int arms_hb_set_disk_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used,
                           uint64_t avail);
int arms_hb_set_traffic_count(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                              uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                              uint64_t in_error, uint64_t out_error);
int arms_hb_set_traffic_rate(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                             uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                             uint64_t in_error, uint64_t out_error);
int arms_hb_set_radiowave(struct arms_hb_packet *p, uint16_t ifidx, uint8_t status,
                          uint8_t max, uint8_t min, uint8_t avg);

/*
 * arms_hb_digest_input: zero the digest bytes (4..23) and return the datagram the digest must
 * cover; *len receives its length (44..1024). The prefix is written first if missing.
 */
const uint8_t *arms_hb_digest_input(struct arms_hb_packet *p, size_t *len);

/*
 * arms_hb_set_digest: store a 20-byte digest at offsets 4..23. The packet is then ready to
 * send: p->buf, p->len.
 */
void arms_hb_set_digest(struct arms_hb_packet *p, const uint8_t digest[ARMS_HB_DIGEST_LEN]);

/*
 * arms_hb_sign: HMAC-SHA1 keyed with key[0..keylen) over the digest input, stored in place.
 * Implemented with OpenSSL libcrypto in arms_hb_hmac.c (not part of the libc-only build).
 * Returns ARMS_HB_OK, or ARMS_HB_EINVAL when libcrypto fails.
 */
int arms_hb_sign(struct arms_hb_packet *p, const uint8_t *key, size_t keylen);

#ifdef __cplusplus
}
#endif
#endif /* ARMS_HB_H */
