package conf

import _ "embed"

// Example is the annotated example configuration, showing every key.
//
//go:embed relayd.example.toml
var Example []byte
