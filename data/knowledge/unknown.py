"""Conditions the knowledge table does not cover, written for this project.

The default data teaches the model one honest behaviour for them: say that it has no reliable
information about the named condition and send the patient to a doctor, instead of answering
with whatever condition it knows that sounds similar. The unseen-topic evaluation set asks about
other conditions (held out of the table's training data), so this behaviour is measured on
names the model never saw.
"""

from __future__ import annotations

UNKNOWN_CONDITIONS: tuple[str, ...] = (
    "结节病", "重症肌无力", "系统性红斑狼疮", "强直性脊柱炎", "干燥综合征", "多发性硬化",
    "帕金森病", "癫痫", "白癜风", "银屑病", "克罗恩病", "溃疡性结肠炎", "肾病综合征",
    "甲状腺结节", "桥本甲状腺炎", "肺结节", "慢阻肺", "支气管扩张", "心房颤动", "心肌炎",
    "青光眼", "白内障", "突发性耳聋", "梅尼埃病", "三叉神经痛", "多囊卵巢综合征",
    "子宫肌瘤", "盆腔炎", "股骨头坏死", "骨质疏松",
)

CAUTIOUS = (
    "关于{c}，我这里没有足够可靠的资料，不能给出具体的诊断、用药或处理建议。"
    "{c}需要医生当面检查后判断，请到正规医院相应科室就诊，不要自行用药。"
)
