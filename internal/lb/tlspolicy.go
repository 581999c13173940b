package lb

import (
	"crypto/tls"
	"fmt"
	"net/http"
)

// SecurityPolicy is the ALB security policy the HTTPS listener follows.
const SecurityPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// policyTLS12Suites are the TLS 1.2 cipher suites of SecurityPolicy that Go
// implements safely: its four ECDHE AES-GCM suites. The policy also lists
// ECDHE AES-CBC with SHA-256 (Go implements it but marks it insecure: its
// CBC is not constant time), ECDHE AES-CBC with SHA-384 (not in Go) and
// RSA key exchange with AES-GCM or AES-CBC-SHA256 (no forward secrecy, off
// by default in Go): those are left out, so this list is a subset of the
// policy's and CBC with SHA-1 is never offered. TLS 1.3's suites are not
// configurable in Go and are the policy's three (AES-128-GCM, AES-256-GCM,
// ChaCha20-Poly1305).
var policyTLS12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// PolicyCipherSuites returns the TLS 1.2 cipher suites the listener accepts.
func PolicyCipherSuites() []uint16 { return append([]uint16(nil), policyTLS12Suites...) }

// listenerTLS is the HTTPS listener's configuration: cfg's certificates
// with SecurityPolicy's protocols (TLS 1.2 and 1.3) and cipher suites.
func listenerTLS(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.MinVersion = tls.VersionTLS12
	c.MaxVersion = 0 // up to TLS 1.3
	c.CipherSuites = PolicyCipherSuites()
	return c
}

// DefaultHSTS is the Strict-Transport-Security value the listener adds to
// responses that do not carry one (one year, this host only).
const DefaultHSTS = "max-age=31536000"

// errorPage is the body of a 5xx the LB generates: as ALB's, it names the
// status and nothing internal (no target, no cause: those are in the
// access log's error field).
func errorPage(status int) string {
	text := http.StatusText(status)
	switch status { // ALB's wording
	case http.StatusServiceUnavailable:
		text = "Service Temporarily Unavailable"
	case http.StatusGatewayTimeout:
		text = "Gateway Time-out"
	}
	return fmt.Sprintf("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n</body>\r\n</html>\r\n", status, text, status, text)
}
