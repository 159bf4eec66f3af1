function "a" {
  module = "a.wasm"
}

queue "orders" {
  subject  = "orders.*"
  function = "a"
}

topic "order_created" {
  subject = "orders.created"
  subscriber "s" { function = "a" }
}

queue "everything" {
  subject  = "audit.>"
  function = "a"
}

topic "audit_login" {
  subject = "audit.login.ok"
  subscriber "s" { function = "a" }
}

queue "payments" {
  subject     = "payments.in"
  function    = "a"
  dead_letter = "orders.failed"
}

queue "refunds" {
  subject     = "refunds.in"
  function    = "a"
  dead_letter = "dlq.money"
}

queue "chargebacks" {
  subject     = "chargebacks.in"
  function    = "a"
  dead_letter = "dlq.money"
}

queue "shadow" {
  subject     = "shadow.in"
  function    = "a"
  dead_letter = "sluice.dlq.refunds_x"
}

queue "refunds_x" {
  subject  = "refunds_x.in"
  function = "a"
}
