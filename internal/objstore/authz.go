package objstore

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/s3err"

	"github.com/haven-platform/haven/internal/iam"
)

// The auth seam.
//
// versitygw verifies every SigV4 signature itself (headers, presigned query
// strings, aws-chunked streaming payloads, POST policies) with a signing key
// it asks its IAM service for, and decides each action by combining the
// bucket policy with the IAM service's identity-policy decision, with AWS's
// precedence (an explicit Deny anywhere wins, otherwise any Allow). gatewayIAM
// is that IAM service, built on haven's iam package:
//
//   - auth.SigningKeyProvider: DeriveSigningKey looks the access key up in
//     the Keyring (credentials pushed by haven's issuer), refuses an unknown,
//     expired or token-mismatched key, and returns the derived SigV4 key, so
//     the secret itself never reaches versitygw.
//   - auth.PolicyEvaluator: EvaluatePolicy applies the role's identity
//     policies with iam.Evaluate, the same evaluation the Secrets Manager API
//     uses.
//   - auth.PrincipalResolver: bucket policies name principals by ARN (role,
//     assumed-role session, account), as on AWS.
//
// The auth.IAMService account-management methods are refused: credentials
// come only from haven's issuer.
type gatewayIAM struct {
	keys iam.KeyLookup
	pol  atomic.Pointer[policySet]
}

// policySet is the policy state of one configuration, replaced whole on reload.
type policySet struct {
	account string
	roles   map[string][]iam.Policy
	buckets map[string]json.RawMessage // bucket policies, for the POST rule
}

func newGatewayIAM(keys iam.KeyLookup, c Config) *gatewayIAM {
	g := &gatewayIAM{keys: keys}
	g.setConfig(c)
	return g
}

func (g *gatewayIAM) setConfig(c Config) {
	ps := &policySet{account: c.Account, roles: map[string][]iam.Policy{}, buckets: map[string]json.RawMessage{}}
	for r, p := range c.Roles {
		ps.roles[r] = append([]iam.Policy(nil), p...)
	}
	for _, b := range c.Buckets {
		ps.buckets[b.Name] = b.Policy
	}
	g.pol.Store(ps)
}

// errExpiredToken is S3's answer to an expired session token.
var errExpiredToken = s3err.APIError{Code: "ExpiredToken", Description: "The provided token has expired.", HTTPStatusCode: http.StatusBadRequest}

// credential resolves and checks a request's access key and session token.
func (g *gatewayIAM) credential(access, sessionToken string) (iam.Credentials, error) {
	c, err := g.keys.Lookup(access)
	switch {
	case errors.Is(err, iam.ErrExpired):
		return iam.Credentials{}, errExpiredToken
	case err != nil:
		return iam.Credentials{}, auth.ErrNoSuchUser
	}
	if c.SessionToken == "" || subtle.ConstantTimeCompare([]byte(sessionToken), []byte(c.SessionToken)) != 1 {
		return iam.Credentials{}, auth.ErrInvalidSessionToken
	}
	return c, nil
}

// DeriveSigningKey implements auth.SigningKeyProvider.
func (g *gatewayIAM) DeriveSigningKey(access, sessionToken, date, region, service string) ([]byte, auth.Account, error) {
	c, err := g.credential(access, sessionToken)
	if err != nil {
		return nil, auth.Account{}, err
	}
	return signingKey(c.SecretAccessKey, date, region, service), g.account(c), nil
}

// signingKey derives SigV4's kSigning from a secret and a credential scope.
func signingKey(secret, date, region, service string) []byte {
	mac := func(key []byte, data string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(data))
		return h.Sum(nil)
	}
	return mac(mac(mac(mac([]byte("AWS4"+secret), date), region), service), "aws4_request")
}

func (g *gatewayIAM) account(c iam.Credentials) auth.Account {
	return auth.Account{
		Access:       c.AccessKeyID,
		Role:         auth.RoleUser,
		SessionToken: c.SessionToken,
		IsSession:    true,
		Arn:          c.Principal.ARN(),
		RoleArn:      roleARN(c.Principal.Account, c.Principal.Role),
	}
}

func roleARN(account, role string) string { return "arn:aws:iam::" + account + ":role/" + role }

// configOwned are the actions that would change what the configuration owns
// (the buckets, their policies and CORS rules); they are denied to every
// caller, so a change is made in the spec, not lost at the next start.
var configOwned = map[auth.Action]bool{
	auth.CreateBucketAction:       true,
	auth.DeleteBucketAction:       true,
	auth.PutBucketPolicyAction:    true,
	auth.DeleteBucketPolicyAction: true,
	auth.PutBucketCorsAction:      true,
}

// decision mirrors versitygw's unexported policyDecision values (NoMatch,
// Allow, Deny), and iam.Decision's (ImplicitDeny, Allowed, ExplicitDeny).
type decision int

const (
	noMatch decision = 0
	allow   decision = 1
	deny    decision = 2
)

func fromIAM(d iam.Decision) decision {
	switch d {
	case iam.Allowed:
		return allow
	case iam.ExplicitDeny:
		return deny
	}
	return noMatch
}

// EvaluatePolicy implements auth.PolicyEvaluator: the identity-policy decision
// for every resource × action, which versitygw combines with the bucket policy.
func (g *gatewayIAM) EvaluatePolicy(access, sessionToken string, actions []auth.Action, resources []string, _ map[string][]string) (auth.PolicyEvaluation, error) {
	rows := make([][]decision, len(resources))
	c, err := g.credential(access, sessionToken)
	principal := ""
	if err == nil {
		principal = c.Principal.ARN()
	}
	ps := g.pol.Load()
	for i, r := range resources {
		rows[i] = make([]decision, len(actions))
		for j, a := range actions {
			if err != nil {
				rows[i][j] = deny // the credential vanished since the signature was checked
				continue
			}
			rows[i][j] = ps.decide(c.Principal.Role, a, r)
		}
	}
	return evaluation(rows, principal)
}

// decide is the identity-policy decision for one action on one resource ARN.
func (ps *policySet) decide(role string, a auth.Action, resource string) decision {
	if configOwned[a] {
		return deny
	}
	policies := ps.roles[role]
	if a == auth.PutObjectAction {
		if bucket, isBucket := strings.CutPrefix(resource, auth.ResourceArnPrefix); isBucket && !strings.Contains(bucket, "/") {
			return postDecision(policies, ps.buckets[bucket], bucket)
		}
	}
	return fromIAM(iam.Evaluate(policies, string(a), resource))
}

// postDecision decides a browser POST upload. versitygw 1.8.0 authorises
// POST object as s3:PutObject on the bucket ARN, before it has read the key
// from the form, so the key-scoped decision AWS makes is impossible here.
// haven decides conservatively: allow only when an identity policy allows
// s3:PutObject on every key of the bucket and no Deny statement, in the
// identity policies or the bucket policy (whatever its principal or
// condition), names s3:PutObject on any key of it. The POST policy's own
// conditions (key prefix, content-length-range) then narrow the upload.
func postDecision(identity []iam.Policy, bucketPolicy json.RawMessage, bucket string) decision {
	keys := auth.ResourceArnPrefix + bucket + "/"
	d := noMatch
	for _, p := range identity {
		for _, s := range p.Statement {
			if !actionMatches(s.Action, string(auth.PutObjectAction)) {
				continue
			}
			for _, r := range s.Resource {
				switch {
				case s.Effect == iam.Deny && touches(r, keys):
					return deny
				case s.Effect == iam.Allow && covers(r, keys):
					d = allow
				}
			}
		}
	}
	var bp struct {
		Statement []struct {
			Effect   string
			Action   iam.StringList
			Resource iam.StringList
		}
	}
	if len(bucketPolicy) > 0 && json.Unmarshal(bucketPolicy, &bp) == nil {
		for _, s := range bp.Statement {
			if s.Effect != string(iam.Deny) || !actionMatches(s.Action, string(auth.PutObjectAction)) {
				continue
			}
			for _, r := range s.Resource {
				if touches(r, keys) {
					return deny
				}
			}
		}
	}
	return d
}

func actionMatches(patterns []string, action string) bool {
	for _, p := range patterns {
		if iam.Match(strings.ToLower(p), strings.ToLower(action)) {
			return true
		}
	}
	return false
}

// covers reports whether resource pattern p matches every key under prefix
// (an ARN prefix ending in "/"): p ends in "*" and what comes before that
// star matches a leading part of prefix.
func covers(p, prefix string) bool {
	q, ok := strings.CutSuffix(p, "*")
	if !ok {
		return false
	}
	for i := 0; i <= len(prefix); i++ {
		if iam.Match(q, prefix[:i]) {
			return true
		}
	}
	return false
}

// touches reports whether resource pattern p may match some key under prefix:
// its literal part (up to the first wildcard) and prefix agree as far as both go.
func touches(p, prefix string) bool {
	lit := p
	if i := strings.IndexAny(p, "*?"); i >= 0 {
		lit = p[:i]
	}
	return strings.HasPrefix(lit, prefix) || strings.HasPrefix(prefix, lit)
}

// decisionsType is versitygw's [][]policyDecision.
var decisionsType = reflect.TypeOf(auth.PolicyEvaluation{}.Decisions)

// checkDecisionsType fails closed if versitygw changed the shape haven
// fills in: the decision element type is unexported, so it is built by
// reflection and must stay an integer kind.
func checkDecisionsType() error {
	t := decisionsType
	if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Slice || t.Elem().Elem().Kind() != reflect.Int {
		return fmt.Errorf("versitygw's auth.PolicyEvaluation.Decisions is %s, not a matrix of int decisions: objstore's IAM seam must be updated for this versitygw", t)
	}
	return nil
}

// evaluation builds versitygw's PolicyEvaluation from haven's decisions.
func evaluation(rows [][]decision, principal string) (auth.PolicyEvaluation, error) {
	var ev auth.PolicyEvaluation
	if err := checkDecisionsType(); err != nil {
		return ev, err
	}
	m := reflect.MakeSlice(decisionsType, len(rows), len(rows))
	for i, row := range rows {
		r := reflect.MakeSlice(decisionsType.Elem(), len(row), len(row))
		for j, d := range row {
			r.Index(j).SetInt(int64(d))
		}
		m.Index(i).Set(r)
	}
	reflect.ValueOf(&ev).Elem().FieldByName("Decisions").Set(m)
	ev.PrincipalArn = principal
	return ev, nil
}

// ResolvePrincipals implements auth.PrincipalResolver: it returns the
// principals that name nothing. Valid are the account (its id or root ARN),
// a listed role's ARN and its assumed-role session ARNs.
func (g *gatewayIAM) ResolvePrincipals(principals []string) ([]string, error) {
	ps := g.pol.Load()
	var invalid []string
	for _, p := range principals {
		if !ps.principalExists(p) {
			invalid = append(invalid, p)
		}
	}
	return invalid, nil
}

func (ps *policySet) principalExists(p string) bool {
	if p == ps.account || p == "arn:aws:iam::"+ps.account+":root" {
		return true
	}
	if role, ok := strings.CutPrefix(p, "arn:aws:iam::"+ps.account+":role/"); ok {
		_, known := ps.roles[role]
		return known
	}
	if rest, ok := strings.CutPrefix(p, "arn:aws:sts::"+ps.account+":assumed-role/"); ok {
		role, session, ok := strings.Cut(rest, "/")
		_, known := ps.roles[role]
		return ok && known && session != ""
	}
	return false
}

// errNoAccounts refuses versitygw's account management: haven's issuer is
// the only source of credentials.
var errNoAccounts = s3err.GetAPIError(s3err.ErrAdminMethodNotSupported)

// CreateAccount implements auth.IAMService; refused.
func (g *gatewayIAM) CreateAccount(auth.Account) error { return errNoAccounts }

// GetUserAccount implements auth.IAMService: the account of a held
// credential, without its secret.
func (g *gatewayIAM) GetUserAccount(access string) (auth.Account, error) {
	c, err := g.keys.Lookup(access)
	if err != nil {
		return auth.Account{}, auth.ErrNoSuchUser
	}
	acc := g.account(c)
	acc.SessionToken = ""
	return acc, nil
}

// ResolveAccounts implements auth.IAMService: every access key is reported
// missing, since a temporary credential cannot own a grant (as versitygw's
// own standalone IAM treats sessions).
func (g *gatewayIAM) ResolveAccounts(ids []string) ([]string, error) {
	return append([]string{}, ids...), nil
}

// UpdateUserAccount implements auth.IAMService; refused.
func (g *gatewayIAM) UpdateUserAccount(string, auth.MutableProps) error { return errNoAccounts }

// DeleteUserAccount implements auth.IAMService; refused.
func (g *gatewayIAM) DeleteUserAccount(string) error { return errNoAccounts }

// ListUserAccounts implements auth.IAMService; refused.
func (g *gatewayIAM) ListUserAccounts() ([]auth.Account, error) { return nil, errNoAccounts }

// Shutdown implements auth.IAMService.
func (g *gatewayIAM) Shutdown() error { return nil }

// Compile-time guards: the seam implements every interface versitygw looks for.
var (
	_ auth.IAMService         = (*gatewayIAM)(nil)
	_ auth.SigningKeyProvider = (*gatewayIAM)(nil)
	_ auth.PolicyEvaluator    = (*gatewayIAM)(nil)
	_ auth.PrincipalResolver  = (*gatewayIAM)(nil)
)
