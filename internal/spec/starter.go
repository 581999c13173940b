package spec

import _ "embed"

// Starter is the spec `haven init` writes: the reference architecture with
// the sample app. The repository's haven.yaml is a copy of it.
//
//go:embed starter.yaml
var Starter []byte
