package config

import _ "embed"

// Example is `perch config example`: every key, commented, and valid.
//
//go:embed example.yaml
var Example []byte
