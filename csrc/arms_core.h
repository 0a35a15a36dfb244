/*
 * libarms C core: everything the Python package needs from C, and what firmware links.
 *
 *   arms_hb.h         heartbeat datagram builder (libc only; signing is a separate step)
 *   arms_hb_sender.h  heartbeat sender thread (pthreads, UDP, HMAC-SHA1 via libcrypto)
 *   arms_chunk.h      tunnel chunk encoder / incremental decoder (libc only, no allocation)
 *   arms_keepalive.h  tunnel echo / inactivity deadline bookkeeping (no I/O, no clock)
 */
#ifndef ARMS_CORE_H
#define ARMS_CORE_H

#include "arms_chunk.h"
#include "arms_hb.h"
#include "arms_hb_sender.h"
#include "arms_keepalive.h"

#endif /* ARMS_CORE_H */
