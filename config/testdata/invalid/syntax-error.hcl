function "a" {
  module = "a.wasm"
  timeout = "5s
}

queue "q" {
  subject = 
}
