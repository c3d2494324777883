#ifndef QCOWKIT_CGNUTLS_SHIM_H
#define QCOWKIT_CGNUTLS_SHIM_H
/* GnuTLS for the TLS target (Sources/TLS): credentials and sessions. */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#endif
