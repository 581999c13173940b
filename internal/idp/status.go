package idp

import (
	"slices"
	"sort"
	"time"
)

// Status is a snapshot of the provider for `haven status`: its metadata, the
// registered clients and the published keys. It holds no secret, hash or
// token. A snapshot is immutable: a change publishes a new one, and callers
// must not modify the slices of one they hold.
type Status struct {
	// Issuer is the issuer URL.
	Issuer string `json:"issuer"`
	// DiscoveryURL is where clients read the metadata.
	DiscoveryURL string `json:"discovery_url"`
	// Addr is the listen address ("" before Start).
	Addr string `json:"addr"`
	// Clients are the registered clients.
	Clients []ClientStatus `json:"clients"`
	// SigningKey is the id ("kid") of the key that signs now.
	SigningKey string `json:"signing_key"`
	// Keys are the published keys, oldest first.
	Keys []KeyStatus `json:"keys"`
	// Users is the directory's size.
	Users int `json:"users"`
	// Groups are the directory's groups with their member counts.
	Groups []GroupStatus `json:"groups"`
}

// ClientStatus is one registered client (without its secret's hash).
type ClientStatus struct {
	// ID is the client_id.
	ID string `json:"client_id"`
	// Name is the name the login page shows.
	Name string `json:"name"`
	// RedirectURIs are the registered redirect URIs.
	RedirectURIs []string `json:"redirect_uris"`
	// PostLogoutRedirectURIs are the registered post-logout redirect URIs.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
}

// KeyStatus is one published signing key.
type KeyStatus struct {
	// ID is the key's "kid", its RFC 7638 thumbprint.
	ID string `json:"kid"`
	// Algorithm is "RS256".
	Algorithm string `json:"alg"`
	// Created is when the key was made.
	Created time.Time `json:"created"`
	// Retired is when it stopped signing; zero for the signing key.
	Retired time.Time `json:"retired,omitzero"`
	// PublishedUntil is when a retired key leaves the JWKS.
	PublishedUntil time.Time `json:"published_until,omitzero"`
	// Signing is true for the key that signs now.
	Signing bool `json:"signing"`
}

// GroupStatus is one group of the directory.
type GroupStatus struct {
	// Name is the group's name, as in the groups claim.
	Name string `json:"name"`
	// Members is how many users are in it.
	Members int `json:"members"`
}

// Status returns the latest snapshot.
func (p *Provider) Status() Status { return *p.status.Load() }

// publishStatus builds and publishes a new snapshot.
func (p *Provider) publishStatus() {
	s := &Status{Issuer: p.cfg.Issuer, DiscoveryURL: p.cfg.Issuer + "/.well-known/openid-configuration", Users: len(p.cfg.Users)}
	if a := p.addr.Load(); a != nil {
		s.Addr = *a
	}
	for _, c := range p.cfg.Clients {
		s.Clients = append(s.Clients, ClientStatus{ID: c.ID, Name: c.Name,
			RedirectURIs: slices.Clone(c.RedirectURIs), PostLogoutRedirectURIs: slices.Clone(c.PostLogoutRedirectURIs)})
	}
	if r := p.st.keys.Load(); r != nil {
		s.SigningKey = r.signing.id
		for _, k := range r.keys {
			ks := KeyStatus{ID: k.id, Algorithm: string(keyAlgorithm), Created: k.created, Retired: k.retired, Signing: k == r.signing}
			if !k.retired.IsZero() {
				ks.PublishedUntil = k.retired.Add(p.cfg.KeyRetention)
			}
			s.Keys = append(s.Keys, ks)
		}
	}
	members := map[string]int{}
	for _, u := range p.cfg.Users {
		for _, g := range u.Groups {
			members[g]++
		}
	}
	for g, n := range members {
		s.Groups = append(s.Groups, GroupStatus{Name: g, Members: n})
	}
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].Name < s.Groups[j].Name })
	p.status.Store(s)
}
