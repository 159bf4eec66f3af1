function "f" {
  module       = "f.wasm"
  idle_timeout = "0s"
}

function "g" {
  module       = "g.wasm"
  idle_timeout = "forever"
}
