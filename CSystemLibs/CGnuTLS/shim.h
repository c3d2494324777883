#ifndef QCOWKIT_CGNUTLS_SHIM_H
#define QCOWKIT_CGNUTLS_SHIM_H
/* GnuTLS for the TLS target (Sources/TLS): credentials and sessions.
 *
 * The library is not linked: loading it and its eight dependencies (nettle,
 * hogweed, gmp, p11-kit, libtasn1, libidn2, libunistring, ffi) and running
 * their constructors cost every qcowkit process about a millisecond, and
 * only NBD over TLS uses it. GnuTLSLibrary.swift opens it with dlopen on
 * first use and calls through the table QK_DL_TABLE declares; the header
 * supplies only the types, constants and function declarations. */
#include "../CSystemShims/dl_table.h"
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* Every GnuTLS function Sources/TLS calls. */
#define QK_GNUTLS_FUNCTIONS(X) \
    X(gnutls_bye) \
    X(gnutls_certificate_allocate_credentials) \
    X(gnutls_certificate_free_credentials) \
    X(gnutls_certificate_get_peers) \
    X(gnutls_certificate_server_set_request) \
    X(gnutls_certificate_set_dh_params) \
    X(gnutls_certificate_set_known_dh_params) \
    X(gnutls_certificate_set_x509_crl_file) \
    X(gnutls_certificate_set_x509_key_file2) \
    X(gnutls_certificate_set_x509_trust_file) \
    X(gnutls_certificate_verify_peers2) \
    X(gnutls_cipher_get) \
    X(gnutls_cipher_get_key_size) \
    X(gnutls_credentials_set) \
    X(gnutls_deinit) \
    X(gnutls_dh_params_deinit) \
    X(gnutls_dh_params_import_pkcs3) \
    X(gnutls_dh_params_init) \
    X(gnutls_error_is_fatal) \
    X(gnutls_handshake) \
    X(gnutls_handshake_set_timeout) \
    X(gnutls_init) \
    X(gnutls_priority_set_direct) \
    X(gnutls_psk_allocate_client_credentials) \
    X(gnutls_psk_allocate_server_credentials) \
    X(gnutls_psk_free_client_credentials) \
    X(gnutls_psk_free_server_credentials) \
    X(gnutls_psk_set_client_credentials) \
    X(gnutls_psk_set_server_credentials_file) \
    X(gnutls_psk_set_server_dh_params) \
    X(gnutls_psk_set_server_known_dh_params) \
    X(gnutls_record_cork) \
    X(gnutls_record_get_direction) \
    X(gnutls_record_recv) \
    X(gnutls_record_send) \
    X(gnutls_record_uncork) \
    X(gnutls_server_name_set) \
    X(gnutls_strerror) \
    X(gnutls_transport_set_int2) \
    X(gnutls_x509_crt_check_hostname) \
    X(gnutls_x509_crt_deinit) \
    X(gnutls_x509_crt_get_activation_time) \
    X(gnutls_x509_crt_get_basic_constraints) \
    X(gnutls_x509_crt_get_dn) \
    X(gnutls_x509_crt_get_expiration_time) \
    X(gnutls_x509_crt_get_key_purpose_oid) \
    X(gnutls_x509_crt_get_key_usage) \
    X(gnutls_x509_crt_import) \
    X(gnutls_x509_crt_init) \
    X(gnutls_x509_crt_list_import) \
    X(gnutls_x509_crt_list_verify)

QK_DL_TABLE(qk_gnutls, QK_GNUTLS_FUNCTIONS)

#endif
