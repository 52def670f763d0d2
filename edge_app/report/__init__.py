"""Pages people read: the results page on the device (the model card is written by ``mammo-convert``)."""
