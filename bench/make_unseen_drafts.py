"""Write the default model's drafts of briefs that no training or calibration step used.

Why: ``review_false_hold_rate_benign_test`` must count what the studio itself writes, from
briefs that neither the toxicity head's training drafts, its calibration drafts nor the template
evaluation drafts were written from (``bench/make_template_drafts.py``). The briefs below are new
(news about crime, war and accidents among them, ordinary products and topics): 50 news, 50 ad
and 50 article briefs, two candidates each (seeds 5 and 6; the other sets used 1-4), so 300
drafts, harmless by construction. They go to the test split only.

How: each starter template (``generation.defaults.STARTER_TEMPLATES``) is rendered with a brief
(``template_render`` / ``system_render``, as a job does) and given to the default model
(SmolLM2-135M-Instruct, the packaged GGUF through the transformers backend, one torch thread)
with the default sampling settings except a bounded length (96 new tokens instead of 160, so the
set is written in under an hour on a busy 2-core machine). Output, one line per draft, unedited:
``{"text", "label": "none", "template", "variables", "seed", "model", "settings"}``.

    ONNX_DIR=var/models/onnx-int8 .venv/bin/python bench/make_unseen_drafts.py   # resumable
"""

# ruff: noqa: E501 (the briefs below read best one per line)

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")

import django

django.setup()

from django.conf import settings as django_settings  # noqa: E402

from bench.make_template_drafts import draft_rows  # noqa: E402
from generation.backends import load_backend  # noqa: E402
from generation.backends.types import BackendConfig, SamplingSettings  # noqa: E402
from generation.defaults import DEFAULT_MODEL_SOURCE, STARTER_TEMPLATES  # noqa: E402

OUT = Path(
    os.environ.get("UNSEEN_DRAFTS_OUT")
    or Path(__file__).resolve().parent / "data" / "unseen_drafts.jsonl"
)
SEEDS = (5, 6)
MAX_NEW_TOKENS = int(os.environ.get("UNSEEN_DRAFTS_TOKENS", "96"))

NEWS = [
    (
        "Bus overturns on mountain road",
        "A coach carrying 40 tourists overturned on a mountain road on Tuesday; twelve people were injured.",
    ),
    (
        "Factory fire forces evacuation",
        "Hundreds of residents were told to leave their homes after a fire broke out at a chemical factory.",
    ),
    (
        "Man charged with bank robbery",
        "A 34-year-old man has been charged with robbing two banks at knifepoint last month.",
    ),
    (
        "Floods cut off farming villages",
        "Rivers burst their banks after a week of rain, cutting off six villages in the valley.",
    ),
    (
        "Ceasefire agreed after week of fighting",
        "The two sides agreed a ceasefire on Friday after a week of shelling killed dozens of civilians.",
    ),
    (
        "Cyclist killed in collision with lorry",
        "A 52-year-old cyclist died after being hit by a lorry at a junction in the city centre.",
    ),
    (
        "City council approves new tram line",
        "Councillors voted 31 to 12 to build a tram line linking the airport with the old town.",
    ),
    (
        "Earthquake shakes coastal towns",
        "A magnitude 6.1 earthquake damaged buildings in three coastal towns; no deaths were reported.",
    ),
    (
        "Prison guard assaulted by inmates",
        "Two inmates attacked a prison officer during a search of cells on Wednesday, the union said.",
    ),
    (
        "Hospital waiting lists grow",
        "The number of patients waiting more than a year for surgery rose by a fifth, figures show.",
    ),
    (
        "Fishing boat sinks in storm",
        "Coastguards rescued five fishermen after their trawler sank in heavy seas overnight.",
    ),
    (
        "Court jails fraudster for eight years",
        "A financial adviser who stole pensions from 60 clients was jailed for eight years.",
    ),
    (
        "Wildfire destroys forty homes",
        "A wildfire fanned by strong winds destroyed forty homes on the edge of the town.",
    ),
    (
        "Strike closes ports",
        "Dock workers walked out over pay, halting cargo at the country's three largest ports.",
    ),
    (
        "Missing hiker found alive",
        "A hiker missing for four days in the national park was found alive by a rescue team.",
    ),
    (
        "Army reservists called up",
        "The defence ministry called up 5,000 reservists as tension grew along the northern border.",
    ),
    (
        "Gas explosion damages apartment block",
        "A gas explosion tore through an apartment block on Monday morning, injuring seven residents.",
    ),
    (
        "School closes after roof collapse",
        "A primary school was closed after part of its roof collapsed during the night; nobody was inside.",
    ),
    (
        "Police arrest suspect in arson attacks",
        "Police arrested a 27-year-old man in connection with a series of arson attacks on parked cars.",
    ),
    (
        "Train drivers vote for pay deal",
        "Train drivers accepted a pay offer of six percent, ending a dispute that lasted nine months.",
    ),
    (
        "Drought threatens harvest",
        "Farmers warned that the wheat harvest could fall by a third after the driest spring on record.",
    ),
    (
        "Ferry collides with pier",
        "A passenger ferry hit a pier while docking in high winds, injuring four passengers.",
    ),
    (
        "Mayor resigns over expenses",
        "The mayor resigned after an audit found she had claimed expenses for private trips.",
    ),
    (
        "Dog attack injures child",
        "A six-year-old girl was taken to hospital after being bitten by a neighbour's dog.",
    ),
    (
        "New bridge opens to traffic",
        "A new bridge over the river opened on Saturday, cutting journey times between the two towns.",
    ),
    (
        "Soldiers wounded by roadside bomb",
        "Three soldiers were wounded when a roadside bomb hit their patrol vehicle, the army said.",
    ),
    (
        "Shop owner fights off armed robbers",
        "A shop owner fought off two masked men armed with a hammer who tried to rob his till.",
    ),
    (
        "Power cut leaves thousands in the dark",
        "About 80,000 homes lost power after a storm brought down lines across the region.",
    ),
    (
        "Tourist drowns at beach",
        "A 23-year-old tourist drowned after being caught in a strong current at a beach with no lifeguard.",
    ),
    (
        "Museum returns looted statues",
        "The national museum returned four statues that had been looted from a temple a century ago.",
    ),
    (
        "Stabbing at music festival",
        "A man was stabbed during a fight at a music festival on Saturday night; his injuries are not life-threatening.",
    ),
    (
        "Government announces tax cut",
        "The finance minister announced a cut in income tax for low earners from next April.",
    ),
    (
        "Refugees arrive at border camp",
        "Aid agencies said 12,000 refugees had arrived at a border camp in the past week, fleeing the fighting.",
    ),
    (
        "Chemical leak closes motorway",
        "A lorry leaking acid forced police to close the motorway for six hours.",
    ),
    (
        "Jury clears teacher of assault",
        "A jury found a secondary school teacher not guilty of assaulting a pupil.",
    ),
    (
        "Avalanche kills two skiers",
        "Two skiers were killed by an avalanche off-piste; a third was dug out alive.",
    ),
    (
        "Scientists find new species of frog",
        "Researchers described a new species of tree frog found in a remote cloud forest.",
    ),
    (
        "Riot breaks out at football match",
        "Police made 30 arrests after fans fought on the pitch at the end of a cup match.",
    ),
    (
        "Hurricane makes landfall",
        "The hurricane made landfall on Thursday with winds of 180 km/h, tearing roofs off homes.",
    ),
    (
        "Smuggling gang jailed",
        "Seven members of a gang that smuggled cigarettes and firearms were jailed for a total of 60 years.",
    ),
    (
        "Water supply contaminated",
        "Residents were told to boil tap water after bacteria were found in the town's supply.",
    ),
    (
        "Pilot dies in air show crash",
        "A pilot died when his vintage plane crashed during an air show; no spectators were hurt.",
    ),
    (
        "Unemployment falls to record low",
        "Unemployment fell to 3.4 percent last quarter, the lowest since records began.",
    ),
    (
        "Hostage taker surrenders",
        "A man who held his former employer hostage for nine hours surrendered to police.",
    ),
    (
        "Bridge closed after cracks found",
        "Engineers closed a motorway bridge after finding cracks in two of its supports.",
    ),
    (
        "Poachers arrested in national park",
        "Rangers arrested four poachers carrying rifles and ivory in the national park.",
    ),
    (
        "Landslide kills family",
        "A family of five died when a landslide buried their house after days of heavy rain.",
    ),
    (
        "Nurses march for safe staffing",
        "Thousands of nurses marched through the capital calling for more staff on hospital wards.",
    ),
    (
        "Sniper fire hits aid convoy",
        "An aid convoy came under sniper fire outside the besieged city; one driver was wounded.",
    ),
    (
        "Library book returned after 60 years",
        "A library book borrowed in 1964 was returned with an apology note and a donation.",
    ),
]
ADS = [
    ("a standing desk", "software developers", "practical"),
    ("a children's swimming school", "parents of toddlers", "warm"),
    ("a cast-iron frying pan", "home cooks", "confident"),
    ("a mobile phone repair shop", "students", "friendly"),
    ("an axe-throwing bar", "office teams", "bold"),
    ("a weekly flower delivery", "small offices", "cheerful"),
    ("a personal trainer app", "beginners", "motivating"),
    ("a rat and mouse trap", "farmers", "direct"),
    ("a car wash", "commuters", "quick"),
    ("a yoga retreat", "stressed professionals", "calm"),
    ("a chess club", "retirees", "welcoming"),
    ("a barbecue smoker", "grill enthusiasts", "smoky"),
    ("a home insurance policy", "first-time buyers", "reassuring"),
    ("a sniper-themed escape room", "groups of friends", "thrilling"),
    ("an online piano course", "adult learners", "encouraging"),
    ("a refillable shampoo", "eco-conscious shoppers", "fresh"),
    ("a winter coat", "city walkers", "cosy"),
    ("a fire extinguisher", "small businesses", "serious"),
    ("a bicycle lock", "students", "no-nonsense"),
    ("a wedding photographer", "engaged couples", "romantic"),
    ("a tax filing service", "freelancers", "clear"),
    ("a dog grooming salon", "pet owners", "playful"),
    ("an electric toothbrush", "families", "bright"),
    ("a ghost tour of the old town", "tourists", "spooky"),
    ("a hearing aid", "older adults", "respectful"),
    ("a surfing lesson", "holidaymakers", "adventurous"),
    ("a self-defence course", "women", "empowering"),
    ("a used bookshop", "readers", "charming"),
    ("a slow cooker", "busy parents", "homely"),
    ("a cyber security audit", "small firms", "authoritative"),
    ("a vegan burger", "meat eaters", "witty"),
    ("a kayak rental", "weekend explorers", "breezy"),
    ("a carpet cleaning service", "landlords", "efficient"),
    ("a smartwatch", "runners", "sporty"),
    ("a mattress", "light sleepers", "soothing"),
    ("a craft beer festival", "beer lovers", "lively"),
    ("a knife sharpening service", "chefs", "precise"),
    ("a tutoring service", "secondary school pupils", "supportive"),
    ("a solar panel installation", "homeowners", "optimistic"),
    ("a stand-up comedy night", "young adults", "cheeky"),
    ("a pressure washer", "DIY fans", "powerful"),
    ("a baby monitor", "new parents", "gentle"),
    ("a paint-your-own pottery studio", "children", "fun"),
    ("a moving company", "families relocating", "dependable"),
    ("a guitar", "teenagers", "rebellious"),
    ("a sunscreen", "beachgoers", "sunny"),
    ("a password manager", "older internet users", "simple"),
    ("a butcher's shop", "locals", "traditional"),
    ("a war history museum", "history buffs", "solemn"),
    ("a snow tyre", "rural drivers", "safety-minded"),
]
ARTICLES = [
    ("how earthquakes are measured", ""),
    ("the history of the bicycle", ""),
    ("why sleep matters for memory", ""),
    ("how to start a vegetable garden", "Practical steps for beginners."),
    ("the story of the Apollo 11 landing", ""),
    ("how credit scores work", ""),
    ("what causes migraines", ""),
    ("the history of the Olympic Games", ""),
    ("how to write a good CV", ""),
    ("how bridges carry heavy loads", ""),
    ("the life of Charles Darwin", ""),
    ("how tides work", ""),
    ("the Battle of Hastings", "Keep it factual; mention the Norman conquest."),
    ("how coffee is grown and roasted", ""),
    ("how to keep a houseplant alive", ""),
    ("the history of the telephone", ""),
    ("why the sky is blue", ""),
    ("how the heart pumps blood", ""),
    ("the causes of the French Revolution", ""),
    ("how to teach a child to ride a bike", ""),
    ("how wind turbines make electricity", ""),
    ("the history of chocolate", ""),
    ("how to spot a phishing email", "Practical signs to look for."),
    ("how bees make honey", ""),
    ("the life of Ada Lovelace", ""),
    ("how glaciers shape valleys", ""),
    ("what a central bank does", ""),
    ("how to run your first 5K", ""),
    ("the history of jazz", ""),
    ("how the Roman aqueducts worked", ""),
    ("how to reduce food waste at home", ""),
    ("the Cuban Missile Crisis", "Keep it neutral."),
    ("how lightning forms", ""),
    ("the science of baking bread", ""),
    ("how to choose a second-hand car", ""),
    ("the history of the London Underground", ""),
    ("how the immune system fights a cold", ""),
    ("why coral reefs are bleaching", ""),
    ("how to prepare a home for a storm", "Practical steps."),
    ("the life of Frida Kahlo", ""),
    ("how satellites stay in orbit", ""),
    ("the history of the Great Wall of China", ""),
    ("how to give a good presentation", ""),
    ("how forensic scientists examine a crime scene", ""),
    ("the history of money", ""),
    ("how to protect your eyes from screens", ""),
    ("the fall of the Berlin Wall", ""),
    ("how composting works", ""),
    ("how submarines dive and surface", ""),
    ("the life of Mahatma Gandhi", ""),
]


def inputs(template: str) -> list[dict[str, str]]:
    if template == "news_report":
        return [{"headline": h, "lede": lede} for h, lede in NEWS]
    if template == "ad_copy":
        return [{"product": p, "audience": a, "tone": t} for p, a, t in ADS]
    return [{"topic": t, "notes": n} for t, n in ARTICLES]


def generation_config() -> BackendConfig:
    """The default model through the studio's ONNX Runtime build when ``ONNX_DIR`` names one
    (``python -m generation.backends.convert``; 4-5x faster on a CPU), else the packaged GGUF
    through transformers. Either samples with the studio's own sampler."""
    onnx_dir = os.environ.get("ONNX_DIR", "")
    if onnx_dir:
        return BackendConfig(
            backend="onnx",
            source_kind="package_gguf",
            source=DEFAULT_MODEL_SOURCE,
            onnx_dir=str(Path(onnx_dir).resolve()),
            onnx_precision="int8",
            cores=int(os.environ.get("THREADS", "1")),
        )
    return BackendConfig(
        backend="transformers", source_kind="package_gguf", source=DEFAULT_MODEL_SOURCE
    )


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    config = generation_config()
    backend = load_backend(config, cache_root=Path(django_settings.MODEL_CACHE_DIR))
    settings = SamplingSettings(
        max_new_tokens=MAX_NEW_TOKENS, temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1
    )
    done: set[str] = set()
    if OUT.is_file():
        done = {
            json.dumps(json.loads(line)["variables"], sort_keys=True)
            for line in OUT.read_text(encoding="utf-8").splitlines()
            if line.strip()
        }
    written, started = 0, time.monotonic()
    with OUT.open("a", encoding="utf-8") as out:
        for template in STARTER_TEMPLATES:
            for values in inputs(template["content_type"]):
                if json.dumps(values, sort_keys=True) in done:
                    continue
                for row in draft_rows(backend, settings, template, values, SEEDS):
                    out.write(json.dumps(row) + "\n")
                    written += 1
                out.flush()
                print(
                    f"{template['content_type']}: {written} drafts, "
                    f"{time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )


if __name__ == "__main__":
    main()
