"""The federation's private PKI: a two-tier CA, certificate requests, signing and mTLS identity.

Cryptographic choices (the lead copies this into ARCHITECTURE.md):

* **Keys:** ECDSA on NIST P-384 for every key (root, signing CA, aggregator,
  collaborators).  Generating one takes about a millisecond, where RSA-3072
  (OpenFL's choice) takes a sizeable fraction of a second, so a whole federation
  is set up in well under a second.  P-384 gives roughly 192-bit security,
  above RSA-3072's 128.  Keys are unencrypted PKCS#8 PEM, mode 0600, written with
  ``O_CREAT|O_EXCL`` and never overwritten; private-key folders are 0700.
  Requests from OpenFL (RSA >= 2048) are still accepted for signing.
* **Signatures:** ECDSA with SHA-384 on certificates and requests.
* **Validity:** root CA 10 years, signing CA 5 years, leaves 1 year (never past
  the signing CA's own end), so the CA outlives every leaf it issues.  Serial
  numbers are random 159-bit integers.
* **Extensions:** CAs carry BasicConstraints (critical; path length 1 for the
  root, 0 for the signing CA), KeyUsage keyCertSign+cRLSign (critical) and
  SKI/AKI.  Leaves carry BasicConstraints CA:FALSE (critical), KeyUsage
  digitalSignature (critical; plus keyEncipherment for RSA keys), EKU serverAuth
  (aggregator) or clientAuth (collaborator), the SAN and SKI/AKI.  The CA sets
  these itself; nothing a request asks for beyond its names is copied.
* **Fingerprints:** SHA-256 of the DER encoding, printed as colon-separated
  upper-case hex (``AB:CD:...``) by one helper on both sides, so a certificate's
  fingerprint also matches ``openssl x509 -noout -fingerprint -sha256``.

Layout under ``<workspace>/cert`` (OpenFL compatible): ``cert_chain.crt`` (root
then signing CA), ``ca/root-ca.crt``, ``ca/root-ca/private/root-ca.key``,
``ca/signing-ca.crt``, ``ca/signing-ca/private/signing-ca.key``,
``server/agg_<fqdn>.{key,csr,crt}``, ``client/col_<name>.{key,csr,crt}``.
Packages: ``col_<name>_to_agg_cert_request.zip`` holds only ``col_<name>.csr``;
``agg_to_col_<name>_signed_cert.zip`` holds ``client/col_<name>.crt`` and
``cert_chain.crt``.  No package ever holds a private key.

Revocation: there is no CRL, because Python gRPC cannot enforce one; removing a
collaborator from ``plan/cols.yaml`` is what shuts it out, and the server checks
that list on every call (see ``authz``).
"""
