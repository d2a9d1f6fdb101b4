"""The English words a caption may use for a product's colour, material and type.

BLIP writes English, so these built-in lists name what it (and a reviewer) says; a catalog's
own values (every `color`, `material` and `category` in the products table) are added to them
by `catalog_vocabulary`. All words are lower case; multi-word terms ("light blue", "coffee
table") are matched as phrases.

`FAMILIES` maps a colour shade to its colour family and a product type to its broader type.
A colour caption may name a shade of the catalog's family ("navy" for a "blue" product) but
naming only the family of a catalog shade ("blue" for a "navy" product) is reported: the
catalog's colour name is what the shopper reads. Product types are compatible either way
("shoe" and "sneakers").
"""

from __future__ import annotations

COLORS = frozenset({
    "amber", "apricot", "aqua", "azure", "beige", "black", "blue", "blush", "bronze", "brown", "burgundy", "camel",
    "caramel", "charcoal", "cherry", "chocolate", "cobalt", "copper", "coral", "cream", "crimson", "cyan", "ecru",
    "emerald", "fuchsia", "gold", "golden", "graphite", "gray", "green", "grey", "indigo", "ivory", "jade", "khaki",
    "lavender", "lemon", "lilac", "lime", "magenta", "maroon", "mauve", "mint", "mocha", "multicolor",
    "multicolored", "multicoloured", "mustard", "navy", "nude", "off-white", "olive", "orange", "peach", "pink",
    "plum", "purple", "rainbow", "red", "rose", "ruby", "rust", "sage", "salmon", "scarlet", "silver", "tan",
    "tangerine", "taupe", "teal", "transparent", "turquoise", "violet", "white", "wine", "yellow", "baby blue",
    "dark blue", "dark gray", "dark green", "dark grey", "forest green", "hot pink", "light blue", "light gray",
    "light green", "light grey", "navy blue", "rose gold", "royal blue", "sky blue",
})

MATERIALS = frozenset({
    "cotton", "linen", "wool", "cashmere", "silk", "satin", "velvet", "denim", "leather", "suede",
    "faux leather", "fur", "faux fur", "nylon", "polyester", "spandex", "lycra", "fleece", "jersey", "knit",
    "canvas", "tweed", "corduroy", "lace", "mesh", "rubber", "plastic", "vinyl", "acrylic", "glass", "crystal",
    "ceramic", "porcelain", "stoneware", "clay", "terracotta", "marble", "granite", "concrete", "stone",
    "wood", "wooden", "oak", "walnut", "pine", "teak", "bamboo", "rattan", "wicker", "cork", "paper",
    "cardboard", "metal", "metallic", "steel", "stainless steel", "iron", "cast iron", "aluminum", "aluminium",
    "brass", "copper", "bronze", "chrome", "titanium", "sterling silver", "gold", "silver", "platinum",
    "pearl", "jute", "hemp", "felt", "foam", "resin", "silicone", "straw", "quartz", "enamel",
})

PRODUCT_TYPES = frozenset({
    # clothing
    "shirt", "t-shirt", "tee", "blouse", "top", "tank top", "sweater", "jumper", "cardigan", "hoodie",
    "sweatshirt", "jacket", "coat", "blazer", "vest", "dress", "skirt", "jeans", "trousers", "pants",
    "shorts", "leggings", "suit", "jumpsuit", "romper", "pajamas", "robe", "swimsuit", "bikini", "bra",
    "underwear", "socks", "tie", "scarf", "gloves", "mittens",
    # shoes
    "shoe", "sneaker", "trainer", "boot", "sandal", "slipper", "loafer", "heel", "pump", "flip-flop",
    # accessories
    "hat", "cap", "beanie", "belt", "bag", "handbag", "purse", "backpack", "tote", "wallet", "clutch",
    "suitcase", "luggage", "umbrella", "sunglasses", "glasses", "watch",
    # jewellery
    "necklace", "bracelet", "ring", "earring", "earrings", "pendant", "brooch", "anklet",
    # home and furniture
    "lamp", "chair", "table", "desk", "sofa", "couch", "armchair", "stool", "bench", "bed", "shelf",
    "bookcase", "cabinet", "dresser", "mirror", "rug", "carpet", "cushion", "pillow", "blanket", "throw",
    "curtain", "towel", "vase", "candle", "clock", "basket", "planter", "frame", "poster",
    # kitchen
    "mug", "cup", "glass", "bowl", "plate", "dish", "teapot", "kettle", "pan", "pot", "knife", "spoon",
    "fork", "bottle", "jar", "cutting board",
    # electronics and others
    "phone", "phone case", "laptop", "headphones", "earbuds", "speaker", "camera", "keyboard", "charger",
    "toy", "doll", "teddy bear", "book", "notebook", "pen", "bicycle", "helmet",
})

# shade -> its colour family; narrower product type -> broader type
COLOR_FAMILIES = {
    "navy": "blue", "navy blue": "blue", "cobalt": "blue", "azure": "blue", "sky blue": "blue",
    "baby blue": "blue", "royal blue": "blue", "light blue": "blue", "dark blue": "blue", "indigo": "blue",
    "crimson": "red", "scarlet": "red", "burgundy": "red", "maroon": "red", "cherry": "red", "ruby": "red",
    "wine": "red", "fuchsia": "pink", "magenta": "pink", "blush": "pink", "hot pink": "pink", "salmon": "pink",
    "olive": "green", "lime": "green", "mint": "green", "emerald": "green", "sage": "green", "jade": "green",
    "forest green": "green", "light green": "green", "dark green": "green",
    "charcoal": "grey", "graphite": "grey", "light grey": "grey", "dark grey": "grey",
    "light gray": "gray", "dark gray": "gray",
    "mustard": "yellow", "lemon": "yellow", "violet": "purple", "lavender": "purple", "lilac": "purple",
    "plum": "purple", "tan": "brown", "chocolate": "brown", "caramel": "brown", "camel": "brown",
    "taupe": "brown", "mocha": "brown", "ivory": "white", "off-white": "white", "cream": "white",
}
GREY_SPELLINGS = {"gray": "grey"}

TYPE_FAMILIES = {
    "sneaker": "shoe", "trainer": "shoe", "boot": "shoe", "sandal": "shoe", "slipper": "shoe",
    "loafer": "shoe", "heel": "shoe", "pump": "shoe", "flip-flop": "shoe",
    "t-shirt": "shirt", "tee": "shirt", "blouse": "top", "tank top": "top", "hoodie": "sweatshirt",
    "jumper": "sweater", "cardigan": "sweater", "blazer": "jacket", "coat": "jacket", "jeans": "pants",
    "trousers": "pants", "leggings": "pants", "handbag": "bag", "purse": "bag", "backpack": "bag",
    "tote": "bag", "clutch": "bag", "suitcase": "luggage", "beanie": "hat", "cap": "hat",
    "earring": "earrings", "couch": "sofa", "armchair": "chair", "stool": "chair", "desk": "table",
    "bookcase": "shelf", "dresser": "cabinet", "carpet": "rug", "cushion": "pillow", "throw": "blanket",
    "mug": "cup", "teapot": "pot", "kettle": "pot", "notebook": "book", "earbuds": "headphones",
    "phone case": "phone",
}

BUILTIN = {"color": COLORS, "material": MATERIALS, "category": PRODUCT_TYPES}
