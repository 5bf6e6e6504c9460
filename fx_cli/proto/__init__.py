"""Generated protobuf modules (see `make protos`). Only fx_cli.transport and fx_cli.tensors import them."""
