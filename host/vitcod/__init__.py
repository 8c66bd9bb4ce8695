"""ViTCoD's host compiler: a bundle becomes ``vitcod_top``'s DRAM window and descriptor lists."""
