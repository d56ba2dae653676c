"""gRPC servicers: decode, validate, authorise, call the service layer, encode."""
