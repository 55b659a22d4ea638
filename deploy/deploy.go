// Package deploy holds what Talos reads from the extension image: the
// extension manifest, the service spec and the example ExtensionServiceConfig
// patches. They are embedded so that the image builder and the tests use the
// very bytes kept in this folder.
package deploy

import "embed"

// Manifest is manifest.yaml before the version is stamped in.
//
//go:embed manifest.yaml
var Manifest []byte

// ServiceSpec is the service spec installed at
// /usr/local/etc/containers/kommodity-autobootstrap.yaml.
//
//go:embed kommodity-autobootstrap.yaml
var ServiceSpec []byte

// Examples holds the example machine-config patches under examples/.
//
//go:embed examples/*.yaml
var Examples embed.FS
