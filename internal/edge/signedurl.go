package edge

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/iam"
)

// This file verifies CloudFront signed URLs and signed cookies
// (private-content-signed-urls.md): a canned policy (Expires) or a custom
// policy (Policy), a Signature over the policy JSON with the private key of
// Key-Pair-Id, RSA or ECDSA over SHA-1 or, with Hash-Algorithm=SHA256, SHA-256,
// all in CloudFront's URL-safe base64 (+ → -, = → _, / → ~).

// DeniedError is a refused signed URL; Reason says why, for the 403 body.
type DeniedError struct{ Reason string }

func (e *DeniedError) Error() string { return "access denied: " + e.Reason }

func denied(format string, args ...any) *DeniedError {
	return &DeniedError{Reason: fmt.Sprintf(format, args...)}
}

// Signing parameter names, in the query string and (prefixed "CloudFront-")
// as cookies.
const (
	paramExpires   = "Expires"
	paramPolicy    = "Policy"
	paramSignature = "Signature"
	paramKeyPairID = "Key-Pair-Id"
	paramHashAlg   = "Hash-Algorithm"
)

// Bounds on signing parameters, well above what CloudFront's 8 KiB URL
// allows, so decoding work stays small whatever the input.
const (
	maxSignatureChars = 1024
	maxPolicyChars    = 8192
	maxPolicyJSON     = 6144
)

// signedParams are the signing values of one request.
type signedParams struct {
	expires, policy, signature, keyID, hashAlg string
	// any reports whether any signing value was present.
	any bool
	// cookies reports whether they came from cookies.
	cookies bool
}

func isSigningParam(name string) bool {
	switch name {
	case paramExpires, paramPolicy, paramSignature, paramKeyPairID, paramHashAlg:
		return true
	}
	return false
}

func (p *signedParams) set(name, value string) error {
	var dst *string
	switch name {
	case paramExpires:
		dst = &p.expires
	case paramPolicy:
		dst = &p.policy
	case paramSignature:
		dst = &p.signature
	case paramKeyPairID:
		dst = &p.keyID
	case paramHashAlg:
		dst = &p.hashAlg
	}
	if p.any && *dst != "" {
		return denied("%s appears more than once", name)
	}
	if value == "" {
		return denied("%s is empty", name)
	}
	*dst, p.any = value, true
	return nil
}

// splitSigned removes the signing parameters from a raw query string and
// returns them with the remaining query, whose other parameters are kept
// byte for byte and in order.
func splitSigned(rawQuery string) (signedParams, string, error) {
	var sp signedParams
	if rawQuery == "" {
		return sp, "", nil
	}
	var rest []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		rawName, rawVal, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil || !isSigningParam(name) {
			rest = append(rest, part)
			continue
		}
		val, err := url.QueryUnescape(rawVal)
		if err != nil {
			return sp, "", denied("%s is not a valid query value: %v", name, err)
		}
		if err := sp.set(name, val); err != nil {
			return sp, "", err
		}
	}
	return sp, strings.Join(rest, "&"), nil
}

// signedCookies reads the CloudFront-* signed cookies.
func signedCookies(r *http.Request) (signedParams, error) {
	sp := signedParams{cookies: true}
	for _, c := range r.Cookies() {
		name, ok := strings.CutPrefix(c.Name, "CloudFront-")
		if !ok || !isSigningParam(name) {
			continue
		}
		if err := sp.set(name, c.Value); err != nil {
			return sp, err
		}
	}
	return sp, nil
}

var cfBase64 = strings.NewReplacer("-", "+", "_", "=", "~", "/")

// decodeCF decodes CloudFront's URL-safe base64.
func decodeCF(s string) ([]byte, error) {
	s = cfBase64.Replace(s)
	return base64.StdEncoding.DecodeString(s)
}

// cannedPolicy is the policy CloudFront rebuilds from a canned-policy URL;
// it matches the AWS SDK's JSON encoding byte for byte.
func cannedPolicy(resource string, expires int64) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(resource) // encoding a string cannot fail
	quoted := bytes.TrimSpace(b.Bytes())
	out := make([]byte, 0, len(quoted)+80)
	out = append(out, `{"Statement":[{"Resource":`...)
	out = append(out, quoted...)
	out = append(out, `,"Condition":{"DateLessThan":{"AWS:EpochTime":`...)
	out = strconv.AppendInt(out, expires, 10)
	return append(out, `}}}]}`...)
}

// keyring maps Key-Pair-Id to the public keys a behaviour trusts.
type keyring map[string]crypto.PublicKey

// verifySigned checks a request's signing values against the keys of its
// behaviour. resource is the request URL as the viewer sent it, without the
// signing parameters (scheme://host/path?query); client is the viewer's IP.
// Every refusal is a *DeniedError.
func verifySigned(sp signedParams, keys keyring, resource string, client netip.Addr, now time.Time) error {
	if !sp.any {
		return denied("missing signature: this path needs a CloudFront signed URL (Expires or Policy, Signature, Key-Pair-Id) or signed cookies")
	}
	switch {
	case sp.keyID == "":
		return denied("missing Key-Pair-Id query parameter or cookie value")
	case sp.signature == "":
		return denied("missing Signature query parameter or cookie value")
	case sp.expires == "" && sp.policy == "":
		return denied("missing Expires or Policy query parameter or cookie value")
	case sp.expires != "" && sp.policy != "":
		return denied("both Expires and Policy are present; a signed URL uses one")
	case len(sp.signature) > maxSignatureChars:
		return denied("Signature is longer than %d characters", maxSignatureChars)
	case len(sp.policy) > maxPolicyChars:
		return denied("Policy is longer than %d characters", maxPolicyChars)
	}
	hash := crypto.SHA1
	switch sp.hashAlg {
	case "", "SHA1":
	case "SHA256":
		hash = crypto.SHA256
	default:
		return denied("Hash-Algorithm %q is not supported; use SHA1 or SHA256", sp.hashAlg)
	}
	key, ok := keys[sp.keyID]
	if !ok {
		return denied("Key-Pair-Id %q is not a trusted key of this path", sp.keyID)
	}
	sig, err := decodeCF(sp.signature)
	if err != nil {
		return denied("Signature is not CloudFront base64: %v", err)
	}

	var doc []byte
	var expires int64
	if sp.expires != "" {
		if !digits(sp.expires) || len(sp.expires) > 12 {
			return denied("Expires must be a Unix time in seconds, got %q", sp.expires)
		}
		expires, _ = strconv.ParseInt(sp.expires, 10, 64)
		doc = cannedPolicy(resource, expires)
	} else {
		if doc, err = decodeCF(sp.policy); err != nil {
			return denied("Policy is not CloudFront base64: %v", err)
		}
		if len(doc) > maxPolicyJSON {
			return denied("Policy is longer than %d bytes", maxPolicyJSON)
		}
	}
	if err := verifySignature(key, hash, doc, sig); err != nil {
		return err
	}
	if sp.expires != "" {
		if now.Unix() >= expires {
			return denied("the signed URL expired at %s", time.Unix(expires, 0).UTC().Format(time.RFC3339))
		}
		return nil
	}
	pol, err := parsePolicy(doc)
	if err != nil {
		return err
	}
	return pol.allows(resource, client, now)
}

func verifySignature(key crypto.PublicKey, hash crypto.Hash, doc, sig []byte) error {
	var digest []byte
	if hash == crypto.SHA256 {
		d := sha256.Sum256(doc)
		digest = d[:]
	} else {
		d := sha1.Sum(doc)
		digest = d[:]
	}
	var ok bool
	switch k := key.(type) {
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, hash, digest, sig) == nil
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, sig)
	}
	if !ok {
		return denied("the signature does not match the policy: the URL was changed after signing, or signed with another key")
	}
	return nil
}

// policy is a parsed custom policy.
type policy struct {
	resource     string // "" = any
	notAfter     int64  // DateLessThan
	notBefore    int64  // DateGreaterThan, when hasNotBefore
	hasNotBefore bool
	source       netip.Prefix // IpAddress, when hasSource
	hasSource    bool
}

// parsePolicy parses a custom policy strictly: one statement, the names
// exactly as CloudFront documents them, no duplicate or unknown field, and a
// required DateLessThan. A condition the edge would not enforce is refused,
// never ignored.
func parsePolicy(doc []byte) (policy, error) {
	var p policy
	top, err := jsonObject(doc, "policy")
	if err != nil {
		return p, err
	}
	if err := onlyKeys(top, "policy", "Statement"); err != nil {
		return p, err
	}
	var stmts []json.RawMessage
	if err := json.Unmarshal(top["Statement"], &stmts); err != nil || len(stmts) != 1 {
		return p, denied("policy: Statement must be an array of exactly one statement")
	}
	st, err := jsonObject(stmts[0], "Statement[0]")
	if err != nil {
		return p, err
	}
	if err := onlyKeys(st, "Statement[0]", "Resource", "Condition"); err != nil {
		return p, err
	}
	if raw, ok := st["Resource"]; ok {
		if err := json.Unmarshal(raw, &p.resource); err != nil || p.resource == "" {
			return p, denied("policy: Resource must be a non-empty string")
		}
		if !strings.HasPrefix(p.resource, "http://") && !strings.HasPrefix(p.resource, "https://") &&
			!strings.HasPrefix(p.resource, "http*://") && !strings.HasPrefix(p.resource, "*") {
			return p, denied("policy: Resource must start with http://, https://, http*:// or *, got %q", p.resource)
		}
	}
	cond, err := jsonObject(st["Condition"], "Condition")
	if err != nil {
		return p, err
	}
	if err := onlyKeys(cond, "Condition", "DateLessThan", "DateGreaterThan", "IpAddress"); err != nil {
		return p, err
	}
	if _, ok := cond["DateLessThan"]; !ok {
		return p, denied("policy: Condition.DateLessThan is required")
	}
	if p.notAfter, err = epochTime(cond["DateLessThan"], "DateLessThan"); err != nil {
		return p, err
	}
	if raw, ok := cond["DateGreaterThan"]; ok {
		if p.notBefore, err = epochTime(raw, "DateGreaterThan"); err != nil {
			return p, err
		}
		p.hasNotBefore = true
	}
	if raw, ok := cond["IpAddress"]; ok {
		ip, err := jsonObject(raw, "IpAddress")
		if err != nil {
			return p, err
		}
		if err := onlyKeys(ip, "IpAddress", "AWS:SourceIp"); err != nil {
			return p, err
		}
		var s string
		if err := json.Unmarshal(ip["AWS:SourceIp"], &s); err != nil {
			return p, denied("policy: IpAddress.AWS:SourceIp must be a string")
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return p, denied("policy: IpAddress.AWS:SourceIp must be a CIDR range such as 192.0.2.0/24, got %q", s)
		}
		p.source, p.hasSource = pfx.Masked(), true
	}
	return p, nil
}

func (p policy) allows(resource string, client netip.Addr, now time.Time) error {
	t := now.Unix()
	if t >= p.notAfter {
		return denied("the signed URL expired at %s", time.Unix(p.notAfter, 0).UTC().Format(time.RFC3339))
	}
	if p.hasNotBefore && t <= p.notBefore {
		return denied("the signed URL is valid only after %s", time.Unix(p.notBefore, 0).UTC().Format(time.RFC3339))
	}
	if p.resource != "" && !iam.Match(p.resource, resource) {
		return denied("the policy's Resource does not match this URL")
	}
	if p.hasSource && !p.source.Contains(client.Unmap()) {
		return denied("the policy allows only %s, and the request comes from %s", p.source, client)
	}
	return nil
}

// epochTime parses {"AWS:EpochTime": <integer>}.
func epochTime(raw json.RawMessage, field string) (int64, error) {
	obj, err := jsonObject(raw, field)
	if err != nil {
		return 0, err
	}
	if err := onlyKeys(obj, field, "AWS:EpochTime"); err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(obj["AWS:EpochTime"]))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || !digits(v) || n <= 0 || n > 1e11 {
		return 0, denied("policy: %s.AWS:EpochTime must be a Unix time in seconds (an unquoted integer), got %s", field, v)
	}
	return n, nil
}

// jsonObject decodes one JSON object into its raw members, refusing
// duplicate names and trailing data.
func jsonObject(raw []byte, what string) (map[string]json.RawMessage, error) {
	bad := denied("policy: %s must be a JSON object", what)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad
		}
		if _, dup := out[name]; dup {
			return nil, denied("policy: %s has %q twice", what, name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, bad
		}
		out[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, denied("policy: unexpected data after %s", what)
	}
	return out, nil
}

func onlyKeys(obj map[string]json.RawMessage, what string, allowed ...string) error {
	for k := range obj {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return denied("policy: %s has %q, which the edge does not enforce; allowed: %s", what, k, strings.Join(allowed, ", "))
		}
	}
	return nil
}
