"""Field deployment tools run on a workstation: the offline install archive for a device."""
