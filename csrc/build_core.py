"""cffi builder for ``libarms._core`` (API / out-of-line mode) from the C sources in csrc/.

* ``python csrc/build_core.py --inplace``: build ``libarms/_core*.so`` next to the package
  (what scripts/bootstrap.sh runs).
* ``python csrc/build_core.py --emit-c DIR``: only write ``_core.c`` into DIR (cross builds
  compile it with the target's gcc against a sysroot, see scripts/cross_core.sh).
* setup.py picks up ``ffibuilder`` through ``cffi_modules``.

Links OpenSSL's libcrypto (HMAC-SHA1) and pthreads.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: Sources of the extension, relative to the project root (setup.py runs from there).
SOURCES = ["arms_hb.c", "arms_hb_hmac.c", "arms_hb_sender.c", "arms_chunk.c",
           "arms_keepalive.c"]

CDEF = r"""
/* arms_hb.h */
#define ARMS_HB_MAX_PACKET 1024
#define ARMS_HB_PREFIX_LEN 44
#define ARMS_HB_DIGEST_LEN 20
#define ARMS_HB_DISTID_LEN 16
#define ARMS_HB_OK 0
#define ARMS_HB_ESIZE 254
#define ARMS_HB_EEXIST 1280
#define ARMS_HB_EINVAL 1276
struct arms_hb_packet { uint16_t len; uint8_t buf[1024]; };
int arms_hb_set_distribution_id(struct arms_hb_packet *p, const uint8_t id[16]);
int arms_hb_parse_distribution_id(const char *text, uint8_t out[16]);
void arms_hb_clear(struct arms_hb_packet *p);
int arms_hb_set_cpu_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t utilization);
int arms_hb_set_cpu_detail_usage(struct arms_hb_packet *p, uint16_t idx, uint8_t idle,
                                 uint8_t interrupt, uint8_t user, uint8_t sys, uint8_t other);
int arms_hb_set_mem_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used, uint64_t avail);
int arms_hb_set_disk_usage(struct arms_hb_packet *p, uint16_t idx, uint64_t used, uint64_t avail);
int arms_hb_set_traffic_count(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                              uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                              uint64_t in_error, uint64_t out_error);
int arms_hb_set_traffic_rate(struct arms_hb_packet *p, uint16_t ifidx, uint64_t in_octet,
                             uint64_t out_octet, uint64_t in_packet, uint64_t out_packet,
                             uint64_t in_error, uint64_t out_error);
int arms_hb_set_radiowave(struct arms_hb_packet *p, uint16_t ifidx, uint8_t status,
                          uint8_t max, uint8_t min, uint8_t avg);
const uint8_t *arms_hb_digest_input(struct arms_hb_packet *p, size_t *len);
void arms_hb_set_digest(struct arms_hb_packet *p, const uint8_t digest[20]);
int arms_hb_sign(struct arms_hb_packet *p, const uint8_t *key, size_t keylen);

/* arms_hb_sender.h */
#define ARMS_HB_MAX_SERVERS 5
struct arms_hb_sender_stats {
    uint64_t rounds; uint64_t sent; uint64_t errors; uint64_t paused;
    uint64_t requests; uint64_t publishes; uint64_t late;
};
struct arms_hb_sender { ...; };
int arms_hb_sender_init(struct arms_hb_sender *s);
void arms_hb_sender_destroy(struct arms_hb_sender *s);
int arms_hb_sender_configure(struct arms_hb_sender *s, const uint8_t distid[16],
                             uint32_t interval_ms, uint32_t lead_ms, int family);
void arms_hb_sender_clear_servers(struct arms_hb_sender *s);
int arms_hb_sender_add_server(struct arms_hb_sender *s, const char *host, uint16_t port,
                              const uint8_t *key, uint32_t keylen);
int arms_hb_sender_start(struct arms_hb_sender *s);
void arms_hb_sender_stop(struct arms_hb_sender *s);
void arms_hb_sender_pause(struct arms_hb_sender *s, int paused);
int arms_hb_sender_is_running(struct arms_hb_sender *s);
uint64_t arms_hb_sender_wait_request(struct arms_hb_sender *s, uint64_t seen, uint32_t timeout_ms);
void arms_hb_sender_publish(struct arms_hb_sender *s, const struct arms_hb_packet *pkt,
                            uint64_t seq);
void arms_hb_sender_get_stats(struct arms_hb_sender *s, struct arms_hb_sender_stats *out);

/* arms_chunk.h */
#define ARMS_CHUNK_F_TRAIL 1
#define ARMS_CHUNK_F_ECHO_REQUEST 2
#define ARMS_CHUNK_F_ECHO_RESPONSE 4
#define ARMS_CHUNK_F_LAST 8
#define ARMS_CHUNK_EV_NEED_MORE 0
#define ARMS_CHUNK_EV_DATA 1
#define ARMS_CHUNK_EV_CHUNK 2
#define ARMS_CHUNK_EV_END 3
#define ARMS_CHUNK_E_SIZE 1
#define ARMS_CHUNK_E_TOO_BIG 2
#define ARMS_CHUNK_E_ID 3
#define ARMS_CHUNK_E_HEADER 4
#define ARMS_CHUNK_E_CRLF 5
#define ARMS_CHUNK_E_AFTER_END 6
struct arms_chunk_decoder {
    uint32_t max_chunk; uint32_t state; uint32_t hdr_len; uint32_t remaining;
    uint32_t size; uint32_t id; uint32_t flags; int32_t error; ...;
};
struct arms_chunk_event {
    int32_t kind; uint32_t id; uint32_t flags; uint32_t size;
    const uint8_t *data; size_t data_len;
};
long arms_chunk_decode(struct arms_chunk_decoder *d, const uint8_t *buf, size_t len,
                       struct arms_chunk_event *ev);
int arms_chunk_header(char *out, size_t cap, uint32_t size, uint32_t id, int trail);
long arms_chunk_encode(uint8_t *out, size_t cap, const uint8_t *data, size_t len, uint32_t id,
                       int trail);

/* arms_keepalive.h */
#define ARMS_KA_NONE 0
#define ARMS_KA_SEND_ECHO 1
#define ARMS_KA_DEAD 2
#define ARMS_KA_IDLE 3
struct arms_keepalive {
    uint64_t interval_ms; uint64_t next_tick_ms; uint64_t idle_deadline_ms;
    uint8_t armed; uint8_t echo_outstanding; ...;
};
void arms_keepalive_start(struct arms_keepalive *k, uint64_t now_ms, uint64_t interval_ms);
void arms_keepalive_confirmed(struct arms_keepalive *k, uint64_t now_ms);
void arms_keepalive_activity(struct arms_keepalive *k, uint64_t now_ms);
void arms_keepalive_echo_answered(struct arms_keepalive *k);
int arms_keepalive_poll(struct arms_keepalive *k, uint64_t now_ms, int writing);
uint64_t arms_keepalive_next_deadline(const struct arms_keepalive *k);
void arms_keepalive_stop(struct arms_keepalive *k);
"""

COMPILE_ARGS = ["-std=c99", "-Wall", "-Wextra", "-O2"]


def make_builder(absolute: bool = False) -> FFI:
    """The builder; source paths are relative to the project root (setup.py's cwd) unless
    ``absolute`` (FFI.compile runs the compiler from its temporary directory)."""
    base = HERE if absolute else "csrc"
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("libarms._core", '#include "arms_core.h"\n',
                   sources=[os.path.join(base, s) for s in SOURCES],
                   include_dirs=[base], libraries=["crypto", "pthread"],
                   extra_compile_args=COMPILE_ARGS)
    return ffi


ffibuilder = make_builder()


def _up_to_date() -> bool:
    """True when an in-place libarms/_core*.so for this interpreter is newer than every input."""
    import glob
    import importlib.machinery
    built = [p for suffix in importlib.machinery.EXTENSION_SUFFIXES
             for p in glob.glob(os.path.join(ROOT, "libarms", "_core" + suffix))]
    if not built:
        return False
    inputs = glob.glob(os.path.join(HERE, "*.[ch]")) + [os.path.abspath(__file__)]
    return min(os.path.getmtime(p) for p in built) > max(os.path.getmtime(p) for p in inputs)


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--emit-c":
        out = os.path.join(argv[1], "_core.c")
        ffibuilder.emit_c_code(out)
        print(out)
        return 0
    if argv == ["--inplace"]:
        os.chdir(ROOT)
        if _up_to_date():
            print("libarms._core is up to date")
            return 0
        tmp = os.path.join("build", "cffi")
        os.makedirs(tmp, exist_ok=True)
        so = make_builder(absolute=True).compile(tmpdir=tmp, verbose=False)
        target = os.path.join("libarms", os.path.basename(so))
        os.replace(so, target)
        print(f"built {target}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
