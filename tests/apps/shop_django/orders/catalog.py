"""What a checkout contains (the demo shop sells one basket)."""

CHECKOUT_ITEMS = (("SKU-RED-1", 2), ("SKU-BLU-7", 1), ("SKU-GRN-3", 1))
