/* Heartbeat signing with OpenSSL libcrypto's one-shot HMAC (HMAC-SHA1). See arms_hb.h. */
#include "arms_hb.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

int arms_hb_sign(struct arms_hb_packet *p, const uint8_t *key, size_t keylen)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t len;
    const uint8_t *data;
    static const uint8_t empty_key[1] = {0};

    if (p == NULL || (key == NULL && keylen != 0) || keylen > 0x7fffffff)
        return ARMS_HB_EINVAL;
    data = arms_hb_digest_input(p, &len);
    if (HMAC(EVP_sha1(), key != NULL ? key : empty_key, (int)keylen, data, len, md, &mdlen) == NULL
        || mdlen != ARMS_HB_DIGEST_LEN)
        return ARMS_HB_EINVAL;
    arms_hb_set_digest(p, md);
    return ARMS_HB_OK;
}
