/*
 * Tunnel chunk codec (arms-wire.md 5.2, 5.6, 7.4), incremental and sans-I/O.
 *
 *   chunk      = size *( ";" extension ) CRLF data CRLF       size: hex, either case
 *   extension  = "id=" decimal | "trail" | "echo-request" | "echo" | "echo-response" | other
 *   last-chunk = "0" *( ";" extension ) CRLF CRLF
 *
 * The decoder accepts exactly what libarms/protocol/chunks.py accepts (the tests feed both the
 * same bytes): header line shorter than 256 bytes, buffered across calls; id = 1..10 decimal
 * digits below 2^32 (0 when absent); unknown and empty extensions ignored; data size at most
 * max_chunk; data followed by CR LF; zero chunk followed by CR LF; nothing after the zero chunk.
 *
 * State is a caller-owned struct that is valid when zero-filled. Nothing allocates; data is
 * never copied: the decoder hands out pointers into the caller's buffer.
 */
#ifndef ARMS_CHUNK_H
#define ARMS_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARMS_CHUNK_MAX_HEADER     256    /* header line incl. CR LF must be < 256 + 2 */
#define ARMS_CHUNK_DEFAULT_MAX    65536  /* max_chunk when the field is 0 */
#define ARMS_CHUNK_MAX_WRITE      65535  /* largest data arms_chunk_encode writes */
#define ARMS_CHUNK_HEADER_BUFSZ   32     /* room for any header the encoder writes */

/* flags of the current chunk (decoder) */
#define ARMS_CHUNK_F_TRAIL          0x01
#define ARMS_CHUNK_F_ECHO_REQUEST   0x02
#define ARMS_CHUNK_F_ECHO_RESPONSE  0x04  /* "echo" or "echo-response"; wins over request */
#define ARMS_CHUNK_F_LAST           0x08  /* the zero chunk */

/* events returned through struct arms_chunk_event */
#define ARMS_CHUNK_EV_NEED_MORE  0  /* every byte given was consumed; feed more */
#define ARMS_CHUNK_EV_DATA       1  /* a piece of the current chunk's data */
#define ARMS_CHUNK_EV_CHUNK      2  /* the current chunk is complete (after its CR LF) */
#define ARMS_CHUNK_EV_END        3  /* the zero chunk is complete: the stream is over */

/* error codes left in decoder.error */
#define ARMS_CHUNK_E_SIZE       1  /* size field not hexadecimal, or empty */
#define ARMS_CHUNK_E_TOO_BIG    2  /* size above max_chunk */
#define ARMS_CHUNK_E_ID         3  /* id= not 1..10 decimal digits below 2^32 */
#define ARMS_CHUNK_E_HEADER     4  /* header line of 256 bytes or more, or stray CR / LF */
#define ARMS_CHUNK_E_CRLF       5  /* data (or the zero chunk) not followed by CR LF */
#define ARMS_CHUNK_E_AFTER_END  6  /* bytes after the zero chunk */

struct arms_chunk_decoder {
    uint32_t max_chunk;   /* in: largest data size accepted; 0 means 65536 */
    uint32_t state;       /* private; 0 = expecting a header line */
    uint32_t hdr_len;     /* private: bytes held in hdr */
    uint32_t remaining;   /* private: data bytes of the current chunk still to come */
    uint32_t size;        /* out: data size of the current chunk */
    uint32_t id;          /* out: id of the current chunk, 0 when absent */
    uint32_t flags;       /* out: ARMS_CHUNK_F_* of the current chunk */
    int32_t  error;       /* out: 0, or ARMS_CHUNK_E_* once the decoder has failed */
    uint8_t  hdr[ARMS_CHUNK_MAX_HEADER + 2];
};

struct arms_chunk_event {
    int32_t        kind;      /* ARMS_CHUNK_EV_* */
    uint32_t       id;        /* EV_CHUNK / EV_END: the chunk's id */
    uint32_t       flags;     /* EV_CHUNK / EV_END: the chunk's ARMS_CHUNK_F_* */
    uint32_t       size;      /* EV_CHUNK / EV_END: the chunk's data size */
    const uint8_t *data;      /* EV_DATA: points into buf */
    size_t         data_len;  /* EV_DATA: bytes at data; always the last bytes consumed */
};

/*
 * arms_chunk_decode: consume bytes of buf[0..len) up to and including the next event.
 * Returns the number of bytes consumed (0..len) and fills *ev:
 *   EV_DATA   - ev->data / ev->data_len: the next piece of the current chunk's data; it is
 *               the tail of the consumed bytes (data == buf + ret - data_len).
 *   EV_CHUNK  - the chunk whose data was handed out is complete; id / flags / size set.
 *   EV_END    - the zero chunk is complete; any later byte is an error.
 *   EV_NEED_MORE - all len bytes were consumed without completing an event.
 * Call again with buf + ret, len - ret until it returns EV_NEED_MORE with ret == len.
 * A zero-size chunk reports no EV_DATA. Returns -1 on malformed input: d->error says why
 * and every later call returns -1 too.
 */
long arms_chunk_decode(struct arms_chunk_decoder *d, const uint8_t *buf, size_t len,
                       struct arms_chunk_event *ev);

/*
 * arms_chunk_header: write "<hex>;id=<id>[;trail]\r\n" (lowercase hex, no leading zeros)
 * for a chunk of `size` data bytes into out[0..cap). Returns the header length, or -1 when
 * size is 0 or above 65535 or cap is too small (ARMS_CHUNK_HEADER_BUFSZ is always enough).
 */
int arms_chunk_header(char *out, size_t cap, uint32_t size, uint32_t id, int trail);

/*
 * arms_chunk_encode: write a whole message chunk (header, data, CR LF) into out[0..cap).
 * Returns the number of bytes written, or -1 when len is 0 or above 65535 or cap is too small.
 */
long arms_chunk_encode(uint8_t *out, size_t cap, const uint8_t *data, size_t len, uint32_t id,
                       int trail);

/* The fixed chunks: echo request (written by the device), echo response (the answer libarms
 * 5.33 accepts, vector tunnel/24) and the zero chunk that ends a stream. */
extern const char ARMS_CHUNK_ECHO_REQUEST[];   /* "4;echo-request;trail\r\necho\r\n" */
extern const char ARMS_CHUNK_ECHO_RESPONSE[];  /* "4;echo-response;trail\r\necho\r\n" */
extern const char ARMS_CHUNK_END[];            /* "0\r\n\r\n" */

#ifdef __cplusplus
}
#endif
#endif /* ARMS_CHUNK_H */
