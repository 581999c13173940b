// Package ssotest holds the end-to-end single sign-on tests: the real courses binary, PostgreSQL, Secrets Manager and instance metadata, signing in through a real internal/idp provider, driven by an HTTP client and a headless Chromium.
//
// The tests live here, not in cmd/courses, because the app imports nothing
// from internal/, even in its tests: here the app is a process that knows the
// provider only by its issuer URL, as it would know Okta or Entra ID.
package ssotest
