"""APIs beyond the registered modules: decomposing plain pretrained ResNets into shared filter bases."""
