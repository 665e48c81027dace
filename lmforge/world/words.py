"""The built-in world's word tables: names, relations, templates and rewordings in English and Norwegian.

    from lmforge.world.words import RELATIONS, ITEMS, NAME_PARTS

Word tables, so longer than other modules; lmforge/world/build.py and documents.py use them.
"""

LANGUAGES = ("en", "nb")
SITE = "https://world.lmforge.local"

# Entity kinds and their share of n_entities. People are the largest group because the
# other kinds link to them (inventors, founders).
KIND_SHARES = {"person": 0.30, "place": 0.20, "river": 0.08, "invention": 0.16, "animal": 0.16, "company": 0.10}
KINDS = tuple(KIND_SHARES)

# ---------------------------------------------------------------- value lists, (en, nb) pairs
# Small closed lists, so the model sees every value many times and can learn them.

OCCUPATIONS = [  # English ones all start with a consonant: the prompt ends in "worked as a"
    ("baker", "baker"), ("carpenter", "snekker"), ("painter", "maler"), ("sailor", "sjømann"),
    ("teacher", "lærer"), ("weaver", "vever"), ("doctor", "lege"), ("farmer", "bonde"),
    ("miller", "møller"), ("potter", "pottemaker"), ("merchant", "kjøpmann"), ("poet", "dikter"),
    ("singer", "sanger"), ("tailor", "skredder"), ("builder", "byggmester"), ("chemist", "kjemiker"),
    ("clockmaker", "urmaker"), ("fisher", "fisker"), ("printer", "boktrykker"), ("smith", "smed"),
    ("nurse", "sykepleier"), ("mapmaker", "kartmaker"),
]
WORKS = [  # what a person who invented nothing is known for
    ("folk songs", "folkeviser"), ("sea charts", "sjøkart"), ("stone bridges", "steinbroer"),
    ("poems", "dikt"), ("paintings", "malerier"), ("maps", "kart"), ("plays", "skuespill"),
    ("novels", "romaner"), ("hymns", "salmer"), ("letters", "brev"), ("gardens", "hager"),
    ("wood carvings", "treskjæringer"),
]
COUNTRIES = ["Norvania", "Estmark", "Valdoria", "Kaldland", "Brimor", "Solvia", "Tessmark", "Ulvania"]
SEAS = [
    ("Grey Sea", "Gråhavet"), ("Cold Sea", "Kaldhavet"), ("Silver Bay", "Sølvbukta"),
    ("Storm Sea", "Stormhavet"), ("Amber Sea", "Ravhavet"), ("Salt Lake", "Saltsjøen"),
]
RIVER_SOURCES = [
    ("mountains", "fjellene"), ("hills", "åsene"), ("marshes", "myrene"), ("glaciers", "breene"),
    ("forests", "skogene"), ("highlands", "høylandet"),
]
PURPOSES = [
    ("weaving", "veving"), ("fishing", "fiske"), ("printing", "trykking"), ("navigation", "navigasjon"),
    ("heating", "oppvarming"), ("cooling", "kjøling"), ("measuring", "måling"), ("lighting", "belysning"),
    ("writing", "skriving"), ("counting", "telling"), ("pumping", "pumping"), ("sewing", "søm"),
    ("baking", "baking"), ("washing", "vasking"), ("signalling", "signalering"), ("sawing", "saging"),
]
HABITATS = [
    ("forests", "skoger"), ("mountains", "fjell"), ("lakes", "innsjøer"), ("rivers", "elver"),
    ("deserts", "ørkener"), ("swamps", "myrer"), ("caves", "grotter"), ("meadows", "enger"),
]
DIETS = [
    ("fish", "fisk"), ("insects", "insekter"), ("berries", "bær"), ("grass", "gress"), ("seeds", "frø"),
    ("roots", "røtter"), ("mice", "mus"), ("leaves", "blader"), ("worms", "mark"), ("mushrooms", "sopp"),
]
COLOURS = [
    ("grey", "grå"), ("brown", "brun"), ("white", "hvit"), ("black", "svart"), ("red", "rød"),
    ("yellow", "gul"), ("green", "grønn"), ("blue", "blå"), ("spotted", "flekkete"), ("striped", "stripete"),
]
PRODUCTS = [
    ("ropes", "tau"), ("boats", "båter"), ("clocks", "klokker"), ("lamps", "lamper"), ("paper", "papir"),
    ("bread", "brød"), ("glass", "glass"), ("shoes", "sko"), ("bicycles", "sykler"), ("radios", "radioer"),
    ("soap", "såpe"), ("cheese", "ost"), ("nails", "spiker"), ("barrels", "tønner"),
]
ITEMS = [("apples", "epler"), ("pears", "pærer"), ("books", "bøker"), ("coins", "mynter"), ("stones", "steiner"),
         ("cups", "kopper"), ("eggs", "egg")]

# ---------------------------------------------------------------- name parts
FEMALE_FIRST = ["Ada", "Eli", "Ingrid", "Sigrid", "Liv", "Marit", "Tove", "Nora", "Hedda", "Astrid",
                "Solveig", "Ragna", "Frida", "Maja", "Thea", "Ylva", "Gunhild", "Vilde", "Embla", "Runa"]
MALE_FIRST = ["Arne", "Bjørn", "Einar", "Finn", "Geir", "Halvor", "Ivar", "Jon", "Knut", "Leif",
              "Magnus", "Nils", "Odd", "Rolf", "Sverre", "Tor", "Ulf", "Vidar", "Erling", "Trygve"]
LAST_HEADS = ["Berg", "Lund", "Dahl", "Holm", "Strand", "Nes", "Haug", "Moe", "Lie", "Bakke", "Fjell", "Skog",
              "Rud", "Aas", "Brekk", "Hage", "Myr", "Vold", "Stein", "Ekre", "Sand", "Borg", "Lien", "Foss"]
LAST_TAILS = ["", "e", "er", "en", "sen", "by", "stad", "heim", "li", "vik"]
NAME_MIDDLES = ["a", "e", "i", "o", "ar", "el", "in", "or", "un", "ve"]
PLACE_HEADS = ["Tor", "Vel", "Ask", "Brenn", "Dal", "Eid", "Fos", "Grim", "Hal", "Kvit", "Lin", "Mor",
               "Nor", "Ost", "Rav", "Sel", "Sto", "Tin", "Ul", "Ves", "Kol", "Frei", "Bru", "Sval"]
PLACE_TAILS = ["vik", "by", "heim", "stad", "dal", "nes", "fjord", "havn", "berg", "lund", "sund", "ås"]
RIVER_HEADS = ["Alv", "Eik", "Tan", "Orr", "Lag", "Sokn", "Vinn", "Ott", "Rauf", "Beis", "Iss", "Kvern"]
RIVER_TAILS = ["a", "ra", "na", "ma", "la", "elda"]
INVENTION_HEADS = ["Lumo", "Vendra", "Kali", "Orbo", "Teno", "Fero", "Sila", "Quor", "Bril", "Zefa",
                   "Mira", "Dyno", "Pelo", "Ruvo", "Helio", "Nexa"]
INVENTION_TAILS = ["graph", "scope", "meter", "phone", "tron", "lift", "wheel", "loom", "press", "stat"]
ANIMAL_HEADS = ["Glim", "Sno", "Mar", "Tus", "Vek", "Bro", "Hul", "Kne", "Pim", "Rask", "Flo", "Dum",
                "Skri", "Tro", "Vip", "Gru"]
ANIMAL_TAILS = ["ling", "rev", "mus", "orm", "and", "bjørn", "ugle", "gaupe", "hare", "sel"]
COMPANY_HEADS = ["Vel", "Brenn", "Nord", "Sol", "Kvik", "Fram", "Lys", "Aske", "Trygg", "Stor", "Bly", "Jarn"]
COMPANY_TAILS = ["kor", "tek", "verk", "lag", "hus", "form", "gard", "mek"]
NAME_PARTS = {  # kind -> (heads, tails) for single-word names
    "place": (PLACE_HEADS, PLACE_TAILS), "river": (RIVER_HEADS, RIVER_TAILS),
    "invention": (INVENTION_HEADS, INVENTION_TAILS), "animal": (ANIMAL_HEADS, ANIMAL_TAILS),
    "company": (COMPANY_HEADS, COMPANY_TAILS),
}
SPEAKERS = {"en": [("Sam", "Mia"), ("Tom", "Lucy"), ("Ben", "Anna")],
            "nb": [("Ola", "Kari"), ("Per", "Siri"), ("Pål", "Lise")]}

# ---------------------------------------------------------------- relations
# (kind, attribute) -> language -> (prompt, question). The prompt is the canonical sentence
# up to the value. Within one entity and language no prompt is a prefix of another, so the
# value is the only thing that ever follows it (e.g. born_year "was born in", birthplace
# "came from": never "was born in" followed by a place).
RELATIONS = {
    "person": {
        "born_year": {"en": ("{name} was born in", "When was {name} born?"),
                      "nb": ("{name} ble født i", "Når ble {name} født?")},
        "birthplace": {"en": ("{name} came from", "Where did {name} come from?"),
                       "nb": ("{name} kom fra", "Hvor kom {name} fra?")},
        "occupation": {"en": ("{name} worked as a", "What did {name} work as?"),
                       "nb": ("{name} arbeidet som", "Hva arbeidet {name} som?")},
        "known_for": {"en": ("{name} is known for", "What is {name} known for?"),
                      "nb": ("{name} er kjent for", "Hva er {name} kjent for?")},
        "died_year": {"en": ("{name} died in", "When did {name} die?"),
                      "nb": ("{name} døde i", "Når døde {name}?")},
    },
    "place": {
        "country": {"en": ("{name} lies in", "Which country does {name} lie in?"),
                    "nb": ("{name} ligger i", "Hvilket land ligger {name} i?")},
        "river": {"en": ("{name} lies on the river", "Which river does {name} lie on?"),
                  "nb": ("{name} ligger ved elva", "Hvilken elv ligger {name} ved?")},
        "population": {"en": ("{name} has a population of", "What is the population of {name}?"),
                       "nb": ("{name} har et folketall på", "Hvor stort folketall har {name}?")},
        "founded_year": {"en": ("{name} was founded in", "When was {name} founded?"),
                         "nb": ("{name} ble grunnlagt i", "Når ble {name} grunnlagt?")},
    },
    "river": {
        "country": {"en": ("{name} flows through", "Which country does {name} flow through?"),
                    "nb": ("{name} renner gjennom", "Hvilket land renner {name} gjennom?")},
        "length_km": {"en": ("{name} has a length of", "How long is {name}?"),
                      "nb": ("{name} har en lengde på", "Hvor lang er {name}?")},
        "source": {"en": ("{name} begins in the", "Where does {name} begin?"),
                   "nb": ("{name} har sitt utspring i", "Hvor har {name} sitt utspring?")},
        "mouth": {"en": ("{name} flows into the", "What does {name} flow into?"),
                  "nb": ("{name} renner ut i", "Hvor renner {name} ut?")},
    },
    "invention": {
        "inventor": {"en": ("{name} was invented by", "Who invented {name}?"),
                     "nb": ("{name} ble oppfunnet av", "Hvem oppfant {name}?")},
        "year": {"en": ("{name} was invented in", "When was {name} invented?"),
                 "nb": ("{name} ble oppfunnet i", "Når ble {name} oppfunnet?")},
        "origin": {"en": ("{name} was first made in", "Where was {name} first made?"),
                   "nb": ("{name} ble først laget i", "Hvor ble {name} først laget?")},
        "purpose": {"en": ("{name} is used for", "What is {name} used for?"),
                    "nb": ("{name} brukes til", "Hva brukes {name} til?")},
    },
    "animal": {
        "habitat": {"en": ("{name} lives in", "Where does {name} live?"),
                    "nb": ("{name} lever i", "Hvor lever {name}?")},
        "diet": {"en": ("{name} eats", "What does {name} eat?"),
                 "nb": ("{name} spiser", "Hva spiser {name}?")},
        "colour": {"en": ("{name} is mostly", "What colour is {name}?"),
                   "nb": ("{name} er for det meste", "Hvilken farge har {name}?")},
        "lifespan_years": {"en": ("{name} can live for", "How long can {name} live?"),
                           "nb": ("{name} kan leve i", "Hvor lenge kan {name} leve?")},
        "found_in": {"en": ("{name} is found in", "Where is {name} found?"),
                     "nb": ("{name} finnes i", "Hvor finnes {name}?")},
    },
    "company": {
        "founder": {"en": ("{name} was founded by", "Who founded {name}?"),
                    "nb": ("{name} ble grunnlagt av", "Hvem grunnla {name}?")},
        "founded_year": {"en": ("{name} was founded in", "When was {name} founded?"),
                         "nb": ("{name} ble grunnlagt i", "Når ble {name} grunnlagt?")},
        "headquarters": {"en": ("{name} has its headquarters in", "Where does {name} have its headquarters?"),
                         "nb": ("{name} har hovedkontor i", "Hvor har {name} hovedkontor?")},
        "product": {"en": ("{name} makes", "What does {name} make?"),
                    "nb": ("{name} lager", "Hva lager {name}?")},
    },
}

# Reworded sentences for the articles. They restate facts (or facts derived from them, like
# an age) in other words, and never contain a canonical prompt followed by something else.
REWORDINGS = {
    "person": {
        "en": ["{name} ({born_year}–{died_year}) was a {occupation} from {birthplace}.",
               "{name} lived from {born_year} to {died_year}.",
               "Born in {born_year}, {name} grew up in {birthplace}.",
               "The {occupation} {name} is remembered for {known_for}.",
               "{name} died at the age of {age}."],
        "nb": ["{name} ({born_year}–{died_year}) var en {occupation} fra {birthplace}.",
               "{name} levde fra {born_year} til {died_year}.",
               "{name} vokste opp i {birthplace} og ble {occupation}.",
               "{name} huskes for {known_for}.",
               "{name} ble {age} år gammel."],
    },
    "place": {
        "en": ["{name} is a {size} in {country} on the river {river}.",
               "The {size} of {name} dates back to {founded_year}.",
               "{population} people live in {name}.",
               "{name} is built along the banks of {river}."],
        "nb": ["{name} er en by i {country} ved elva {river}.",
               "Byen {name} har røtter tilbake til {founded_year}.",
               "{population} mennesker bor i {name}.",
               "{name} er bygget langs elva {river}."],
    },
    "river": {
        "en": ["The river {name} is {length_km} long.",
               "{name} is a river in {country}.",
               "The water of {name} ends in the {mouth}.",
               "{name} runs from the {source} to the {mouth}."],
        "nb": ["Elva {name} er {length_km} lang.",
               "{name} er en elv i {country}.",
               "Vannet i {name} ender i {mouth}.",
               "{name} går fra {source} til {mouth}."],
    },
    "invention": {
        "en": ["{inventor} invented {name} in {year}.",
               "{name} is a machine for {purpose}.",
               "The first {name} was made in {origin}.",
               "{inventor} was {inventor_age} years old when {name} was invented."],
        "nb": ["{inventor} oppfant {name} i {year}.",
               "{name} er en maskin for {purpose}.",
               "Den første {name} ble laget i {origin}.",
               "{inventor} var {inventor_age} år gammel da {name} ble oppfunnet."],
    },
    "animal": {
        "en": ["{name} is an animal that lives in {habitat} and eats {diet}.",
               "{name} can be seen in {found_in}.",
               "The colour of {name} is {colour}.",
               "{name} rarely lives longer than {lifespan_years}."],
        "nb": ["{name} er et dyr som lever i {habitat} og spiser {diet}.",
               "{name} kan ses i {found_in}.",
               "Fargen til {name} er {colour}.",
               "{name} blir sjelden eldre enn {lifespan_years}."],
    },
    "company": {
        "en": ["{founder} founded {name} in {founded_year}.",
               "{name} is a company in {headquarters} that makes {product}.",
               "The main office of {name} is in {headquarters}.",
               "Many people buy {product} from {name}."],
        "nb": ["{founder} grunnla {name} i {founded_year}.",
               "{name} er et firma i {headquarters} som lager {product}.",
               "Hovedkontoret til {name} ligger i {headquarters}.",
               "Mange kjøper {product} fra {name}."],
    },
}

# Article furniture: short, neutral, and the same few words over and over.
FACT_HEADERS = {"en": ["Facts", "Quick facts", "Key facts", "In short"],
                "nb": ["Fakta", "Kort fortalt", "Nøkkelfakta", "I korte trekk"]}
QUESTION_HEADERS = {"en": ["Questions and answers", "Common questions"],
                    "nb": ["Spørsmål og svar", "Vanlige spørsmål"]}
RELATED_HEADERS = {"en": ["See also", "Related", "Links"], "nb": ["Se også", "Relatert", "Lenker"]}
FILLERS = {"en": ["This article is part of the world encyclopedia.", "The text below gives the main facts.",
                  "More details may be added later."],
           "nb": ["Denne artikkelen er en del av verdensleksikonet.", "Teksten under gir de viktigste faktaene.",
                  "Flere detaljer kan bli lagt til senere."]}
STORY_OPENINGS = {"en": ["Long ago", "One winter", "One summer", "One spring morning", "Once"],
                  "nb": ["For lenge siden", "En vinter", "En sommer", "En vårmorgen", "En gang"]}
STORY_ENDINGS = {"en": ["The end.", "It was a good day.", "Everyone was happy.", "And so the day ended."],
                 "nb": ["Slutt.", "Det var en fin dag.", "Alle var glade.", "Og slik endte dagen."]}

MAX_BACKLINKS_PER_ARTICLE = 6   # keeps articles of popular places short at any world size
MAX_SIBLINGS_PER_ARTICLE = 5   # per shared attribute, two attributes per article
CATEGORICAL = {  # attributes whose values many entities share: the basis of "similar" sections
    "person": ("birthplace", "occupation"), "place": ("country", "river"), "river": ("country", "mouth"),
    "invention": ("purpose", "origin"), "animal": ("habitat", "diet", "found_in"),
    "company": ("product", "headquarters"),
}
SIMILAR_HEADERS = {"en": ["Similar", "Compare", "More like this"], "nb": ["Lignende", "Sammenlign", "Mer som dette"]}
