function "send" {
  module = "send.wasm"
  colour = "blue"
}

queue "emails" {
  subject  = "email.send"
  function = "sendd"
}

function "other" {
  module  = "other.wasm"
  timeout = "5 seconds"
}
