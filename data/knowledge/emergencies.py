"""Emergencies by situation, for the red-flag training chats (issue 18): who has them, several
descriptions of each in patients' own words, and a harmless related question that can come
first in a chat. make_dataset.py puts every description into the forms patients use (a
question, a statement, a story with the emergency in the middle, a follow-up turn, typed with
the slips of a pinyin keyboard), so that a small model learns the situation, not a sentence.

Written for this project, apart from the independent probes (the `safety_independent` set
of params.yaml), which no generator reads; tests/unit/test_independent_probes.py checks that
no training prompt shares a 12-character window with them. More situations here is what makes the urgent answer generalise: a situation the model
never saw gets the cautious deferral of an unknown condition, not 120.
"""

# Long Chinese data strings are intended here.
# ruff: noqa: E501

from __future__ import annotations

from dataclasses import dataclass

ADULTS = ("我", "我爸", "我妈", "我老公", "我媳妇", "我哥", "我姐", "同事", "室友", "我舅舅")
ELDERS = ("我爷爷", "我奶奶", "我外公", "我姥姥", "家里老人", "我爸", "我妈", "隔壁大爷")
CHILDREN = ("孩子", "我儿子", "我闺女", "小孩", "我家老二", "我侄子", "我外甥女")
INFANTS = ("宝宝", "我家小宝", "我家闺女", "我外孙", "我家老二")
PREGNANT = ("我", "我老婆", "我媳妇", "我姐", "我儿媳妇", "我表妹")
THIRD = ("我爸", "我妈", "我老公", "我媳妇", "我哥", "我弟", "我同学", "我朋友", "我闺女")
FIRST = ("我",)
MEN = ("我", "我儿子", "我弟", "我老公", "孩子")


@dataclass(frozen=True)
class Situation:
    name: str
    who: tuple[str, ...]  # who says it happened to them ("我") or to whom
    signs: tuple[str, ...]  # the emergency, in patients' words, after the person
    opener: tuple[str, str] | None = None  # a harmless related question and its answer


SITUATIONS: tuple[Situation, ...] = (
    Situation(
        "heart_attack",
        ADULTS + ELDERS,
        (
            "胸口发紧发闷，像被人攥住一样，一身一身地出汗",
            "心口那块疼了快半个钟头，左边胳膊发麻，歇着也不缓解",
            "胸前区绞着疼，连带下巴和后背都酸，脸色煞白",
            "胸口憋得慌还想吐，吃了速效救心丸也没用",
        ),
        ("血压高的人平时要注意什么？", "少盐饮食、规律作息、按医嘱服降压药并定期测血压。"),
    ),
    Situation(
        "stroke",
        ELDERS + ADULTS,
        (
            "说话突然大舌头，吐字不清，右手连筷子都拿不住",
            "一侧嘴角往下耷拉，喝水从嘴边漏出来",
            "半边身子发软站不起来，叫他名字也反应慢",
            "早上起来左边手脚不好使了，走路拖着一条腿",
        ),
        ("老年人血脂高吃什么好？", "少吃油腻和动物内脏，多吃蔬菜粗粮，按医嘱用药并定期复查。"),
    ),
    Situation(
        "infant_fever",
        INFANTS,
        (
            "才五十天，量体温三十八度三，奶也不爱吃了",
            "出生刚二十来天，摸着滚烫，一量三十八度多，一直昏睡",
            "两个月零几天，发热到三十九度，哭声很弱",
        ),
        ("小婴儿一天喝多少奶合适？", "按需喂养为主，体重增长正常、尿量足就说明吃得够。"),
    ),
    Situation(
        "suicide_self",
        FIRST,
        (
            "已经把遗书写好了，觉得活着就是拖累别人",
            "这几天老站在阳台边上，想跳下去一了百了",
            "偷偷攒了好多片安眠药，打算今晚全吃了",
            "拿刀在手腕上划了好几道，不想再撑下去了",
        ),
        ("心情不好的时候怎么调节？", "可以和信任的人聊聊、适当运动、规律作息，持续低落可以看心理门诊。"),
    ),
    Situation(
        "suicide_other",
        THIRD,
        (
            "说活着太累了，已经写好了遗书",
            "这几天一直念叨想从楼上跳下去，刚才还站在窗台边",
            "把家里的绳子藏在床底下，说不想再拖累家里人",
            "在朋友圈发了告别的话，现在电话也不接",
        ),
        None,
    ),
    Situation(
        "pregnancy_bleeding",
        PREGNANT,
        (
            "怀孕六个多月，下身出血比来月经还多",
            "孕三十二周，突然见红量很大，肚子一阵阵发紧",
            "怀孕四个月，今天流血止不住，小肚子坠着疼",
        ),
        ("怀孕期间能喝咖啡吗？", "孕期建议少喝，每天咖啡因控制在少量以内，具体可问产检医生。"),
    ),
    Situation(
        "overdose",
        ADULTS + CHILDREN,
        (
            "一口气吃了大半盒止疼药",
            "把医生开的降糖药一次吞了十来片",
            "喝完酒又吃了一把安眠药，现在叫不太醒",
            "趁大人不注意把奶奶的降压药当糖豆吃了好几颗",
        ),
        ("布洛芬和对乙酰氨基酚能一起吃吗？", "一般不建议自行同时服用，按说明书或遵医嘱使用一种即可。"),
    ),
    Situation(
        "anaphylaxis",
        ADULTS + CHILDREN,
        (
            "打完针没多久，浑身起红疹子，喉咙像被掐住一样",
            "吃了腰果以后眼皮嘴唇肿得老高，喘气带哨音",
            "被野蜂叮了一下，全身发痒起大块，头晕眼发黑",
            "吃完消炎药脸和舌头都肿了，吞口水都困难",
        ),
        ("过敏体质平时要注意什么？", "尽量避开已知的过敏原，外出备好医生开的抗过敏药。"),
    ),
    Situation(
        "breathing",
        ADULTS + ELDERS + CHILDREN,
        (
            "呼吸很费劲，鼻翼一扇一扇的，嘴唇发青",
            "一晚上喘得躺不下，说两句话就得停下来歇",
            "夜里憋醒了，只能坐着大口喘气，咳出粉红色的泡沫痰",
        ),
        ("慢阻肺的人冬天要注意什么？", "注意保暖、避免感冒、规律用吸入药，按医嘱复诊。"),
    ),
    Situation(
        "asthma",
        ADULTS + CHILDREN,
        (
            "哮喘犯了，喷了好几下药还是喘得说不出话",
            "喘得嘴唇发紫，胸口呼哧呼哧响，气吸不进去",
            "平时的哮喘喷雾今天完全不管用了，人憋得直冒汗",
        ),
        ("哮喘的孩子能上体育课吗？", "病情控制稳定时可以适量运动，运动前按医嘱用药并随身带喷雾。"),
    ),
    Situation(
        "meningitis",
        CHILDREN + ADULTS,
        (
            "高烧头痛得要命，脖子僵直，吐得跟喷出来一样",
            "发烧还身上冒出紫红色的小点点，按了也不褪色",
            "烧到四十度，脖子往前弯不下去，人越来越迷糊",
        ),
        None,
    ),
    Situation(
        "acute_abdomen",
        ADULTS + CHILDREN + ELDERS,
        (
            "肚子疼得冒冷汗，整个肚子硬邦邦的，不让碰",
            "右下腹疼了一整天越来越厉害，还发起烧来",
            "肚子绞着疼，吐了好几回，已经一天没放屁没排便",
        ),
        ("胃不好的人早饭吃什么？", "可以吃小米粥、面条、鸡蛋等好消化的食物，少食多餐。"),
    ),
    Situation(
        "collapse",
        ADULTS + ELDERS,
        (
            "突然倒在地上，怎么拍都没反应",
            "晕过去好几分钟，醒来迷迷瞪瞪的不知道自己在哪",
            "刚才眼前一黑就瘫倒了，现在脸白得吓人，出气也弱",
        ),
        None,
    ),
    Situation(
        "poisoning",
        ADULTS + CHILDREN + ELDERS,
        (
            "误喝了一口敌敌畏，嘴里一股药味",
            "把洁厕灵当饮料喝了两口，嗓子火辣辣地疼",
            "吃了山上采的野蘑菇，上吐下泻浑身没劲",
            "喝了瓶子里装的百草枯，现在没什么感觉",
        ),
        None,
    ),
    Situation(
        "gi_bleeding",
        ADULTS + ELDERS,
        (
            "吐出来的都是暗红色的血块",
            "解了几回沥青似的黑大便，一起身就两眼发黑",
            "呕了半盆鲜血，心跳得特别快",
        ),
        ("胃溃疡平时吃什么好？", "规律进餐、少吃辛辣刺激和酒，按医嘱服药并复查胃镜。"),
    ),
    Situation(
        "hypoglycemia",
        ADULTS + ELDERS,
        (
            "打完胰岛素没吃饭，浑身哆嗦冒虚汗，说话颠三倒四",
            "有糖尿病，突然心慌手抖，问他话答非所问",
            "吃了降糖药以后饿着肚子干活，现在浑身湿透叫不醒",
        ),
        ("糖尿病人能吃水果吗？", "血糖稳定时可在两餐之间少量吃低糖水果，注意监测血糖。"),
    ),
    Situation(
        "dka",
        ADULTS + CHILDREN,
        (
            "有糖尿病，这两天一直吐，喘气又深又快，口干得厉害",
            "血糖仪显示HI，人没精神，呼出的气有股烂苹果味",
            "一型糖尿病，打胰岛素断了两天，现在肚子疼、恶心、人发蔫",
        ),
        ("糖尿病人感冒了能吃感冒药吗？", "选无糖剂型，多测血糖，不要自行停胰岛素，有异常及时就医。"),
    ),
    Situation(
        "head_injury",
        ADULTS + CHILDREN + ELDERS,
        (
            "骑电动车摔了，磕到后脑勺，吐了好几次",
            "头被撞了以后昏昏沉沉老想睡，两边瞳孔看着不一样大",
            "从床上摔下来头先着地，现在哭闹不止还吐奶",
            "摔倒撞了头，当时晕过去一会儿，现在耳朵里流出淡红的水",
        ),
        None,
    ),
    Situation(
        "seizure",
        CHILDREN + ADULTS,
        (
            "发高烧突然两眼上翻，手脚一抽一抽的",
            "抽风抽了五分钟还没停下来",
            "犯癫痫抽完一次还没醒过来，又抽上了",
            "烧到三十九度多，浑身发僵，叫也叫不应",
        ),
        ("孩子发烧在家怎么护理？", "多喝水、穿宽松衣物、按说明书用退烧药，精神差要及时就医。"),
    ),
    Situation(
        "vision_loss",
        ADULTS + ELDERS,
        (
            "一只眼睛突然黑了，什么都看不见",
            "眼前突然像拉下一道帘子，半边看不清东西",
            "眼睛胀痛得厉害，看灯有彩色的圈，头痛还吐",
        ),
        ("长时间看手机眼睛干怎么办？", "注意休息、多眨眼，可以用不含防腐剂的人工泪液。"),
    ),
    Situation(
        "burns",
        ADULTS + CHILDREN,
        (
            "被开水烫了大半个后背，起了好多大水泡",
            "炒菜着火燎到了脸，鼻毛都焦了，声音发哑",
            "碰到电线被电打了，手上有个焦黑的口子，心里发慌",
            "被硫酸溅到了胳膊，皮肤发白起皱",
        ),
        None,
    ),
    Situation(
        "trauma",
        ADULTS + CHILDREN + ELDERS,
        (
            "从三楼掉下来，腰疼得厉害，两条腿动不了",
            "出车祸后肚子越来越胀，脸色发白，手脚冰凉",
            "被刀扎到了肚子，血一直往外冒按不住",
            "摔倒后脖子疼，两只手都发麻没劲",
        ),
        None,
    ),
    Situation(
        "bleeding",
        ADULTS + CHILDREN,
        (
            "切菜把手指头切掉了一截",
            "腿被碎玻璃划了个大口子，血往外喷",
            "割腕了，毛巾都被血浸透了",
        ),
        None,
    ),
    Situation(
        "aortic",
        ADULTS + ELDERS,
        (
            "胸口到后背突然像被撕开一样疼，量血压特别高",
            "后背刀割一样疼，疼着疼着往肚子下面走",
        ),
        None,
    ),
    Situation(
        "carbon_monoxide",
        ADULTS + ELDERS + CHILDREN,
        (
            "冬天关着窗在屋里烧炭取暖，一家人都头晕想吐",
            "洗澡时燃气热水器开着，人晕倒在浴室里",
            "开着空调在车里睡着了，醒来头痛得要裂，浑身没劲",
        ),
        None,
    ),
    Situation(
        "choking",
        ADULTS + CHILDREN + ELDERS,
        (
            "吃东西噎住了，脸憋得通红说不出话",
            "把花生米呛进去了，一直咳，喘不上气",
            "吃年糕卡住了，手一直抓着脖子，脸发紫",
        ),
        None,
    ),
    Situation(
        "ectopic",
        PREGNANT,
        (
            "月经推迟了十来天，突然一侧小肚子剧痛，还晕了一下",
            "验孕棒两道杠，现在下腹一边疼得直不起腰，老想解大便",
            "停经一个多月，下面有点出血，刚才肚子疼得站不住",
        ),
        None,
    ),
    Situation(
        "heat_stroke",
        ADULTS + ELDERS + CHILDREN,
        (
            "在大太阳底下干了一下午活，浑身滚烫不出汗，开始说胡话",
            "中暑了，体温四十度，叫他半天才有反应",
            "在闷热的车里待了好久，现在又吐又抽，身上烫手",
        ),
        ("夏天怎么预防中暑？", "避开正午高温外出，多喝水，穿透气衣物，感到不适及时到阴凉处休息。"),
    ),
    Situation(
        "pulmonary_embolism",
        ADULTS + ELDERS,
        (
            "做完手术躺了几天，突然喘不上气，胸口刺痛",
            "坐了十几个小时飞机，一条小腿肿了，刚才突然胸闷憋气",
            "骨折打着石膏，今天突然咳血、喘得厉害",
        ),
        ("长途坐飞机要注意什么？", "多喝水，隔一会儿起来活动或活动脚踝，避免久坐不动。"),
    ),
    Situation(
        "preeclampsia",
        PREGNANT,
        (
            "怀孕八个月，头痛得厉害，眼前冒金星，脚肿得一按一个坑",
            "孕晚期血压一百七，刚才全身抽了一下",
            "怀孕三十四周，突然看东西模糊，胃那里一阵阵疼",
        ),
        ("孕晚期脚肿正常吗？", "轻度脚肿较常见，注意休息抬高双腿，同时按时产检测血压。"),
    ),
    Situation(
        "testicular",
        MEN,
        (
            "睡觉时下面一侧蛋蛋突然剧痛，肿起来了，还恶心",
            "一侧睾丸疼得走不了路，已经两个钟头了",
        ),
        None,
    ),
    Situation(
        "drowning",
        ADULTS + CHILDREN,
        (
            "在河里溺水被捞上来，一直咳，嘴唇发紫",
            "游泳呛了好多水，上岸以后越来越喘",
        ),
        None,
    ),
    Situation(
        "snake_bite",
        ADULTS + ELDERS,
        (
            "被蛇咬了脚踝，伤口周围肿得发黑",
            "在田里被毒蛇咬了一口，整条胳膊开始发麻",
        ),
        None,
    ),
    Situation(
        "child_dehydration",
        INFANTS + CHILDREN,
        (
            "拉肚子一天拉了十几次，一整天没尿，哭都没有眼泪",
            "上吐下泻，囟门都凹下去了，精神特别差",
        ),
        ("孩子拉肚子吃什么好？", "继续正常喂养，补充口服补液盐，注意观察尿量和精神。"),
    ),
    Situation(
        "thunderclap_headache",
        ADULTS + ELDERS,
        (
            "突然头痛得从来没这么厉害过，像被棍子猛敲了一下",
            "头痛欲裂还脖子发硬，吐了两回",
        ),
        ("经常偏头痛怎么缓解？", "规律作息、避免诱因，疼时可以在安静暗处休息，频繁发作请看神经内科。"),
    ),
    Situation(
        "hypertensive_crisis",
        ADULTS + ELDERS,
        (
            "血压量出来两百一，头晕得站不住，眼睛看不清",
            "血压一下子蹿到两百多，头痛、胸闷、手脚发麻",
        ),
        ("降压药饭前吃还是饭后吃？", "不同药物要求不同，请按说明书或医生的嘱咐固定时间服用。"),
    ),
    Situation(
        "sepsis",
        ADULTS + ELDERS,
        (
            "高烧寒战，手脚冰凉，人开始迷糊，一天没怎么尿",
            "尿路感染烧了三天，今天血压低得量不出来，浑身发抖",
        ),
        None,
    ),
    Situation(
        "swallowed_object",
        CHILDREN + INFANTS,
        (
            "把一颗纽扣电池吞下去了",
            "把好几颗磁力珠吞进了肚子",
        ),
        None,
    ),
    Situation(
        "postpartum",
        PREGNANT,
        (
            "生完孩子第三天，下面出血一下子湿透好几片卫生巾，头发晕",
            "剖腹产出院一周，突然大出血，心慌手冷",
        ),
        None,
    ),
    Situation(
        "fetal_movement",
        PREGNANT,
        (
            "怀孕三十五周，今天一整天都没感觉到胎动",
            "孕九个月，羊水破了，流出来的水发绿",
        ),
        None,
    ),
    Situation(
        "arrhythmia",
        ADULTS + ELDERS,
        (
            "心跳一阵快一阵停，刚才眼前一黑晕了过去",
            "心慌得像要跳出嗓子眼，数脉搏一分钟一百八十多下，头晕",
        ),
        None,
    ),
    Situation(
        "delirium",
        ELDERS,
        (
            "突然糊涂了，不认识家里人，还发着烧",
            "今天一直说胡话，手乱抓，叫也叫不清醒",
        ),
        None,
    ),
    Situation(
        "alcohol",
        ADULTS,
        (
            "喝了一斤多白酒，叫不醒，吐了一身",
            "喝酒喝到浑身发冷、呼吸很慢，怎么推都不动",
        ),
        None,
    ),
    Situation(
        "eye_chemical",
        ADULTS + CHILDREN,
        (
            "石灰溅到眼睛里了，疼得睁不开",
            "消毒水喷进了眼睛，眼睛红肿看不清",
        ),
        None,
    ),
)

# How the chats around an emergency go (make_dataset.py combines them with the situations).
QUESTION_ENDINGS: tuple[str, ...] = (
    "，该怎么办？",
    "，要紧吗？",
    "，能在家观察吗？",
    "，需要去医院吗？",
    "，吃点什么药能缓解？",
    "，明天再去医院来得及吗？",
    "，是怎么回事？",
    "，我该做点什么？",
    "，等等看行不行？",
    "。咋办啊",
)
STATEMENT_ENDINGS: tuple[str, ...] = (
    "。",
    "，有一会儿了。",
    "，到现在也没好转。",
    "，就刚才的事。",
    "，家里就我一个人。",
    "",
)
STORY_OPENINGS: tuple[str, ...] = (
    "我们一家周末去郊区玩，回来的路上",
    "昨晚吃完火锅回家，快睡觉的时候",
    "今天单位体检刚做完，中午",
    "过年走亲戚，刚坐下没多久",
    "上午还在菜市场买菜，回家以后",
    "前阵子一直挺好的，今天下午",
)
STORY_DETAILS: tuple[str, ...] = (
    "平时身体还行，就是血压有点高，",
    "之前体检都没什么大问题，",
    "最近工作忙，睡得也少，",
    "家里人都在上班，",
    "本来说好今天去看电影的，",
)
STORY_CLOSINGS: tuple[str, ...] = (
    "家里人说先躺着看看，不知道行不行。",
    "本来想忍一忍等明天门诊。",
    "想问问先吃点什么药顶一下。",
    "我不太懂，你帮忙看看。",
    "附近的诊所已经关门了。",
    "我们离市区有点远。",
)
# The slips of a pinyin keyboard: a character swapped for one that sounds the same.
TYPOS: dict[str, str] = {
    "厉": "历",
    "像": "象",
    "在": "再",
    "已": "以",
    "症": "证",
    "糊": "湖",
    "搐": "触",
    "迷": "谜",
    "肿": "种",
    "胀": "涨",
    "晕": "运",
    "醒": "星",
    "痒": "养",
    "烫": "躺",
    "嘴": "最",
    "吐": "土",
    "喘": "串",
    "咳": "可",
    "腿": "退",
    "抽": "愁",
    "呼": "乎",
    "吸": "希",
    "紫": "子",
    "肚": "度",
    "痛": "通",
    "疼": "腾",
    "烧": "稍",
    "得": "的",
    "地": "的",
}
